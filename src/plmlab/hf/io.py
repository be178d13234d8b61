"""Reading and writing safetensors checkpoints (single file or sharded), safely.

Only safetensors are read: a directory with nothing but pickles (`pytorch_model.bin`, litgpt's
`model.pth`, any `*.pt` / `*.pth` / `*.ckpt`) is refused with how to convert them, since
unpickling can run arbitrary code. Writes go to a temporary name first and
are renamed into place, so an interrupted save never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Iterator

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import PlmlabError

SHARD_INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
# torch.save's pickles: transformers' pytorch_model.bin, litgpt's lit_model.pth / model.pth
# (convert_from_litgpt), raw state dicts, Lightning checkpoints
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


class CheckpointReader:
    """Lazy access to the tensors of a checkpoint directory by key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files = self._locate(path)  # key -> file
        self._handles: dict[Path, object] = {}

    @staticmethod
    def _locate(path: Path) -> dict[str, Path]:
        index = path / SHARD_INDEX
        if index.exists():
            try:
                weight_map = json.loads(regular_file(index).read_text())["weight_map"]
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
                raise PlmlabError(f"{index}: not a valid shard index ({type(e).__name__}: {e})") from None
            if not isinstance(weight_map, dict) or not all(isinstance(f, str) and f and Path(f).name == f
                                                           for f in weight_map.values()):
                # shards sit beside the index: a path (../x) would read files outside the checkpoint
                raise PlmlabError(f"{index}: not a valid shard index (weight_map must map tensor names to "
                                  "file names in the same folder)")
            for f in set(weight_map.values()):
                if not (path / f).is_file():
                    raise PlmlabError(f"{path}: shard {f} named in {SHARD_INDEX} is missing")
            return {k: path / f for k, f in weight_map.items()}
        # Only the model's own weights: other safetensors files may sit beside them (trainer
        # state, adapters). Checkpoints with differently named single files are still read.
        files = [path / SINGLE] if (path / SINGLE).is_file() else sorted(path.glob("*.safetensors"))
        if not files:
            pickles = sorted(p.name for suffix in PICKLE_SUFFIXES for p in path.glob("*" + suffix))
            if pickles:
                raise PlmlabError(f"{path}: only pickle weights ({', '.join(pickles[:3])}) found; plmlab reads "
                                  f"safetensors only ({_convert_hint(pickles[0])})")
            raise PlmlabError(f"{path}: no model.safetensors found")
        out: dict[str, Path] = {}
        for f in files:
            for key in _open(f).keys():
                out[key] = f
        return out

    def keys(self) -> list[str]:
        return list(self.files)

    def get(self, key: str) -> torch.Tensor:
        f = self.files[key]
        if f not in self._handles:
            self._handles[f] = _open(f)
        try:
            return self._handles[f].get_tensor(key)
        except SafetensorError as e:
            raise PlmlabError(f"{f}: corrupt or truncated checkpoint ({e})") from None


def _convert_hint(name: str) -> str:
    """How to turn a pickle one trusts into safetensors: transformers' checkpoints save themselves;
    a bare state dict (litgpt's convert_from_litgpt writes one beside config.json) is loaded into
    the transformers model that config.json describes first (docs/interop.md has the code)."""
    if name.endswith(".bin"):
        return "convert them with transformers: model.save_pretrained(dir, safe_serialization=True)"
    return (f"if you trust {name}, load it with torch.load(..., weights_only=True) into the transformers model "
            "of config.json (AutoModelForCausalLM.from_config) and save_pretrained(dir); see docs/interop.md")


def regular_file(path: Path) -> Path:
    """`path`, if it is a regular file (links followed). Opening a FIFO blocks until someone
    writes to it and a device can stream forever, so a checkpoint's files are checked first."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise PlmlabError(f"{path}: cannot read it ({e.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise PlmlabError(f"{path}: {kind}, not a file; refusing to read it")
    return path


def _open(f: Path):
    regular_file(f)
    try:
        return safe_open(str(f), framework="pt")
    except (SafetensorError, OSError) as e:
        raise PlmlabError(f"{f}: corrupt or truncated safetensors file ({e})") from None


def write_safetensors(tensors: dict[str, torch.Tensor], target: Path) -> None:
    """Write tensors atomically (temp file + fsync + rename) with HF's `format: pt` metadata."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    try:
        save_file(contiguous, str(tmp), metadata={"format": "pt"})
        _readable(tmp)
        _fsync(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(data: dict, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
        _fsync(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _readable(path: Path) -> None:
    """safetensors creates files 0600; checkpoints are meant to be shared like other files."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise PlmlabError(f"{path.parent}: no {path.name} (not a model checkpoint directory)")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise PlmlabError(f"{path}: invalid JSON ({e})") from None


def iter_unique(state: dict[str, torch.Tensor]) -> Iterator[tuple[str, torch.Tensor]]:
    """Items with shared (tied) tensors yielded once, under their first name."""
    seen: set[int] = set()
    for k, v in state.items():
        key = v.data_ptr() if v.numel() else id(v)
        if key in seen:
            continue
        seen.add(key)
        yield k, v
