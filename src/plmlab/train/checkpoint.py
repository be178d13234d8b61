"""Crash-safe checkpoint directories: write aside, fsync, manifest last, rename into place.

    DIR/checkpoints/
      step-00000100/             a complete checkpoint (the rename is the commit point)
        config.json  model.safetensors  tokenizer.json ...   (loadable by load_pretrained)
        trainer_state.json  trainer_state.safetensors        (optimizer, RNGs, data cursor)
        manifest.json            size + sha256 of every other file, written last
      .tmp-step-00000200-<pid>/  a save in progress (or one killed midway): never read

A checkpoint counts only if its manifest verifies, so a save killed at any point (SIGKILL,
power loss, a full disk) leaves the previous checkpoint as the newest complete one. Old
checkpoints are pruned only after the new one is durable (files and folders fsynced).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from safetensors import SafetensorError

from ..errors import PlmlabError
# The reading side (which step-* folders exist, which verify) is shared with everything that
# loads a run directory, so it lives below train/ in hf/manifest.py.
from ..hf.manifest import MANIFEST, list_checkpoints, sha256_file

FORMAT_VERSION = 1


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def write_checkpoint(parent: Path, step: int, write: Callable[[Path], None], keep_last: int = 0) -> Path:
    """Run `write(tmp_dir)`, seal the folder with a manifest and commit it as step-<step>.

    On any failure the temporary folder is removed and earlier checkpoints are untouched; an
    OSError (ENOSPC, EFBIG, EIO ...) or a SafetensorError becomes a one-line PlmlabError.
    """
    parent.mkdir(parents=True, exist_ok=True)
    final = parent / checkpoint_name(step)
    tmp = parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        write(tmp)
        _write_manifest(tmp, step)
        commit_dir(tmp, final)
    except (OSError, SafetensorError) as e:  # safetensors reports a full disk as SafetensorError
        shutil.rmtree(tmp, ignore_errors=True)
        previous = [p.name for s, p in list_checkpoints(parent) if s != step]
        kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
        reason = disk_error_reason(e)
        raise PlmlabError(f"could not save checkpoint {final.name} in {parent}: {reason}; {kept}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune(parent, keep_last)
    return final


def disk_error_reason(e: BaseException) -> str:
    """One line for a failed write: a full disk, a file-size limit (ulimit -f), or the OS's words.
    safetensors reports its own write failures as SafetensorError, not OSError."""
    if isinstance(e, OSError):
        if e.errno == errno.ENOSPC:
            return "no space left on device"
        if e.errno == errno.EFBIG:
            return "file too large (the file-size limit, ulimit -f, was reached)"
        return e.strerror or str(e)
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return f"could not write the weights ({text})"


def _write_manifest(folder: Path, step: int) -> None:
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        files[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": sha256_file(path, sync=True)}
    manifest = {"format": FORMAT_VERSION, "step": step, "files": files}
    write_json_durable(folder / MANIFEST, manifest)
    for sub in [p for p in folder.rglob("*") if p.is_dir()] + [folder]:
        fsync_dir(sub)


def commit_dir(tmp: Path, final: Path) -> None:
    """Rename a finished folder into place, replacing an older one of that name (a same-step
    checkpoint that failed verification, or the previous final/)."""
    if final.exists():
        trash = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.rename(final, trash)
        os.rename(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, final)
    fsync_dir(final.parent)


def prune(parent: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints (0 keeps all) and stale temp folders."""
    for path in parent.glob(".tmp-step-*"):
        if not path.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(path, ignore_errors=True)
    if keep_last > 0:
        for _, path in list_checkpoints(parent)[:-keep_last]:
            shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ durable file helpers


def write_json_durable(path: Path, data) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms that cannot open a folder (Windows): rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
