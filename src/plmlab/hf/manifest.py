"""Reading side of crash-safe checkpoints: which `step-*` folders exist and which verify.

    RUN/checkpoints/step-00000100/   config.json  model.safetensors ...  manifest.json
                                     (manifest: size + sha256 of every other file, written last)

The trainer (`plmlab.train.checkpoint`) writes these folders; everything that *reads* a run
directory (the trainer resuming, `load_pretrained(RUN_DIR)`, `generate --model RUN_DIR`)
needs the same rule, so it lives here, below both: a checkpoint counts only if its manifest
verifies, so a save killed midway or a file truncated later is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from ..errors import PlmlabError

MANIFEST = "manifest.json"
_NAME = re.compile(r"^step-(\d{8,})$")


class CheckpointError(PlmlabError):
    """A checkpoint that is incomplete or does not match its manifest."""


def list_checkpoints(parent: Path) -> list[tuple[int, Path]]:
    """(step, path) of every committed checkpoint folder, oldest first (not yet verified)."""
    if not parent.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in parent.iterdir() if p.is_dir() and (m := _NAME.match(p.name))]
    return sorted(found)


def verify(folder: Path, required: tuple[str, ...] = ()) -> None:
    """Raise CheckpointError unless every file in the manifest has its recorded size and hash."""
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
        expected = {str(name): (int(e["size"]), str(e["sha256"])) for name, e in files.items()}
    except FileNotFoundError:
        raise CheckpointError(f"{folder.name}: no {MANIFEST} (the save did not finish)") from None
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise CheckpointError(f"{folder.name}: {MANIFEST} is unreadable") from None
    for name in required:
        if name not in expected:
            raise CheckpointError(f"{folder.name}: {name} is missing from the manifest")
    for name, (size, digest) in expected.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{folder.name}: {name} is missing")
        if path.stat().st_size != size:
            raise CheckpointError(f"{folder.name}: {name} has {path.stat().st_size} bytes, "
                                  f"the manifest says {size} (truncated?)")
        if sha256_file(path) != digest:
            raise CheckpointError(f"{folder.name}: {name} does not match its sha256 in the manifest")


def latest_complete(parent: Path, required: tuple[str, ...] = (),
                    on_skip: Callable[[str], None] | None = None) -> tuple[int, Path] | None:
    """The newest checkpoint that verifies; each one skipped is reported through `on_skip`."""
    for step, path in reversed(list_checkpoints(parent)):
        try:
            verify(path, required)
            return step, path
        except CheckpointError as e:
            if on_skip is not None:
                on_skip(str(e))
    return None


def sha256_file(path: Path, sync: bool = False) -> str:
    """The file's sha256; `sync` also fsyncs it (the writer hashes and makes durable in one read)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
        if sync:
            os.fsync(f.fileno())
    return h.hexdigest()
