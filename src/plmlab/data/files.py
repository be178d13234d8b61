"""File-system care for the data layer: what kind of thing a path is, opening only regular
files, crash-safe writes, and one-line messages for a full or read-only disk.

Why each piece exists:

* a named pipe (FIFO) blocks ``open()`` until a writer appears, and ``/dev/zero`` never ends:
  corpus paths are ``stat``-ed first and anything but a regular file is refused (given
  directly) or skipped (met in a folder) without being opened;
* a cache file may be a symlink planted to make plmlab read outside the cache (or a stale link
  after the cache was moved): cache files are opened with ``O_NOFOLLOW`` and must be regular;
* a cache entry must never be half-written where a later run would trust it: write under a
  temporary name, ``fsync`` the data, rename into place, ``fsync`` the folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import uuid
from pathlib import Path

from plmlab.errors import PlmlabError


class CorruptCache(ValueError):
    """A cache entry that fails its checks: the caller warns, removes it and rebuilds."""


def cache_dir() -> Path:
    """Where plmlab caches token shards and built-in tokenizers: ``$PLMLAB_CACHE`` if set,
    else ``~/.cache/plmlab``. Created on first use by the writers, not here."""
    env = os.environ.get("PLMLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "plmlab"


def path_kind(path: str | os.PathLike) -> str:
    """``"file"``, ``"folder"``, ``"missing"``, ``"broken symlink"``, ``"named pipe (FIFO)"``,
    ``"device"``, ``"socket"`` or ``"special file"`` -- from ``stat``, never opening the path."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing, a symlink loop, a component that is not a folder ...
        return "broken symlink" if os.path.islink(path) else "missing"
    return _mode_kind(mode)


def _mode_kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "socket" if stat.S_ISSOCK(mode) else "special file"


def open_regular(path: str | os.PathLike, follow_symlinks: bool = True):
    """A binary file object for a *regular* file; anything else raises ``OSError``.

    ``O_NONBLOCK`` makes opening a FIFO (swapped in after a ``stat``) return at once instead of
    waiting for a writer; ``fstat`` then refuses it. Without ``follow_symlinks`` (cache files) a
    symlink (``O_NOFOLLOW``) or a hard-linked file is refused too: neither can make a cache
    entry read a file that was never written into the cache.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_symlinks else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, f"not a regular file but a {_mode_kind(info.st_mode)}", str(path))
        if not follow_symlinks and info.st_nlink != 1:
            raise OSError(errno.EINVAL, "a hard-linked file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def is_plain_folder(path: Path) -> bool:
    """A real folder, not a symlink to one (a cache entry must not point elsewhere)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def write_synced(path: Path, write) -> None:
    """Create ``path``, let ``write(f)`` fill it, and ``fsync`` it before it counts as written."""
    with open(path, "xb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def fsync_folder(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        write_synced(tmp, lambda f: f.write(text.encode("utf-8")))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_folder(path.parent)


def remove_entry(path: Path) -> None:
    """Remove a cache entry whatever it is (folder, file, or a symlink: never what it points at)."""
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(OSError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def write_error(error: OSError, what: str, where: Path) -> PlmlabError:
    """The one line for a failed cache write: say why, and how to get past it."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "no space left on the device"
    elif error.errno == errno.EFBIG:
        reason = "file size limit exceeded (ulimit -f)"
    else:
        reason = error.strerror or str(error)
    return PlmlabError(f"cannot write {what} under {where}: {reason}; nothing was kept "
                       "(free some space, or set PLMLAB_CACHE to another folder)")
