"""Trainer state (optimizer, RNGs) as safetensors + JSON: nothing is ever pickled or unpickled.

A nested state (dicts, lists, tuples, numbers, strings, tensors, numpy arrays) is split into
a flat ``{key: tensor}`` dict for safetensors and a JSON skeleton in which every tensor is
replaced by ``{"__tensor__": key}``. JSON cannot say "tuple" or "dict with int keys" (the
optimizer's ``state`` is keyed by parameter index, ``random.getstate()`` is a tuple), so those
get small tagged objects. Loading a checkpoint therefore only ever parses JSON and safetensors.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import PlmlabError

_TENSOR, _NDARRAY, _TUPLE, _ITEMS = "__tensor__", "__ndarray__", "__tuple__", "__items__"


def flatten(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "t") -> Any:
    """The JSON skeleton of `obj`; its tensors go into `tensors` (keys derived from the path)."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {_TENSOR: prefix}
    if isinstance(obj, np.ndarray):  # small ones only (NumPy's RNG state): kept in the JSON
        return {_NDARRAY: obj.tolist(), "dtype": obj.dtype.str}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return {_TUPLE: [flatten(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: flatten(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}
        return {_ITEMS: [[k, flatten(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in trainer state")


def unflatten(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `flatten`."""
    if isinstance(skeleton, list):
        return [unflatten(v, tensors) for v in skeleton]
    if isinstance(skeleton, dict):
        if _TENSOR in skeleton:
            return tensors[skeleton[_TENSOR]]
        if _NDARRAY in skeleton:
            return np.asarray(skeleton[_NDARRAY], dtype=np.dtype(skeleton["dtype"]))
        if _TUPLE in skeleton:
            return tuple(unflatten(v, tensors) for v in skeleton[_TUPLE])
        if _ITEMS in skeleton:
            return {k: unflatten(v, tensors) for k, v in skeleton[_ITEMS]}
        return {k: unflatten(v, tensors) for k, v in skeleton.items()}
    return skeleton


def rng_state() -> dict[str, Any]:
    """Every generator a training step may draw from: Python, NumPy's global, torch CPU and CUDA."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------ the trainer's files

# In a subfolder: a checkpoint's top level is a model directory (load_pretrained reads it),
# whose readers may take every *.safetensors there for weights.
STATE_JSON = "trainer/state.json"
STATE_TENSORS = "trainer/tensors.safetensors"


def write_trainer_state(folder: Path, info: dict[str, Any], optimizer: torch.optim.Optimizer) -> None:
    """`info` (JSON: step, cursor, options, config ...) plus the optimizer and every RNG."""
    (folder / STATE_JSON).parent.mkdir(exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = {**info, "optimizer": flatten(optimizer.state_dict(), tensors, "optimizer"),
                "rng": flatten(rng_state(), tensors, "rng")}
    save_file(tensors, str(folder / STATE_TENSORS))
    (folder / STATE_JSON).write_text(json.dumps(skeleton, indent=1) + "\n", encoding="utf-8")


def read_trainer_info(folder: Path) -> dict[str, Any]:
    """The JSON part of the trainer state (optimizer and RNG entries still as skeletons)."""
    try:
        info = json.loads((folder / STATE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PlmlabError(f"{folder / STATE_JSON}: unreadable trainer state ({e})") from None
    if not isinstance(info, dict):
        raise PlmlabError(f"{folder / STATE_JSON}: the trainer state is corrupt (not a JSON object)")
    return info


def read_trainer_tensors(folder: Path, info: dict[str, Any]) -> tuple[dict, dict]:
    """(optimizer state_dict, RNG state) rebuilt from safetensors + the JSON skeleton."""
    try:
        tensors = load_file(str(folder / STATE_TENSORS))
    except (OSError, SafetensorError) as e:
        raise PlmlabError(f"{folder / STATE_TENSORS}: unreadable trainer state ({e})") from None
    try:
        return unflatten(info["optimizer"], tensors), unflatten(info["rng"], tensors)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise PlmlabError(f"{folder / STATE_JSON}: the trainer state is corrupt "
                          f"(its optimizer / RNG entries do not match the tensors: {e!r})") from None
