"""Build a model from a Config or a preset name; count parameters without allocating them."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from .config import Config
from .errors import PlmlabError
from .models import SKELETONS, PretrainedModel
from .presets import get_preset


def resolve_config(config_or_name: Config | str, **overrides) -> Config:
    if not isinstance(config_or_name, (Config, str)):
        raise PlmlabError(f"expected a Config or a preset name, got {type(config_or_name).__name__}")
    config = get_preset(config_or_name) if isinstance(config_or_name, str) else config_or_name
    return config.replace(**overrides) if overrides else config


def build_model(config_or_name: Config | str, device: str | torch.device | None = None, **overrides) -> PretrainedModel:
    """A freshly initialised model (in train mode) of the skeleton that `config.arch` names."""
    config = resolve_config(config_or_name, **overrides)
    check_fits(config, torch.device(device or "cpu"))
    with torch.device(device or "cpu"):
        return SKELETONS[config.arch](config)


def check_fits(config: Config, device: torch.device, what: str = "the model") -> None:
    """Refuse, before allocating anything, weights that cannot fit the device's memory: a
    config.json saying 10**9 layers would otherwise hang while its blocks are built (or end in
    an allocator traceback). A cheap estimate clears ordinary models; only a model near or over
    the limit is counted exactly (count_parameters, on the meta device)."""
    budget = device_memory(device)
    itemsize = torch.get_default_dtype().itemsize
    if budget is None or 2 * _rough_params(config) * itemsize < budget:
        return
    params = count_parameters(config)["params"]
    if params * itemsize > budget:
        raise PlmlabError(f"{what} has {params:,} parameters: {params * itemsize / 2**30:,.1f} GiB of "
                          f"{str(torch.get_default_dtype()).removeprefix('torch.')} weights, more than the "
                          f"{budget / 2**30:,.1f} GiB of memory of this {device.type.upper()} device")


def device_memory(device: torch.device) -> int | None:
    """Bytes of memory the device has: the GPU's, or the machine's RAM under any cgroup limit
    (a container's); None where unknown (meta, other devices)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return _cpu_memory() if device.type == "cpu" else None


@functools.cache  # build_model asks on every build; the machine's memory does not change under it
def _cpu_memory() -> int:
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text(encoding="ascii").strip()
    except OSError:
        return ram
    return min(ram, int(limit)) if limit.isdigit() else ram


def _rough_params(c: Config) -> int:
    """An estimate within ~1.5x of the exact count (biases, norms and small heads left out), from
    the config alone: no modules built."""
    width = c.n_heads * c.dim_head
    attention = 2 * c.d_model * width + 2 * c.d_model * c.kv_heads * c.dim_head
    block = attention + (3 if c.gated_mlp else 2) * c.d_model * c.d_ff
    stacks = (1 if c.shared_layers else c.n_layers) * block
    if c.arch == "encoder-decoder":
        stacks += c.decoder_layers * (block + attention)  # a decoder block adds cross-attention
    embeddings = c.vocab_size * c.embed_dim * (1 if c.tie_embeddings else 2) + c.max_positions * c.d_model
    return stacks + embeddings


def copy_matching(source: torch.nn.Module, target: torch.nn.Module) -> tuple[str, ...]:
    """Copy `source`'s weights into `target` wherever names and shapes agree (a fine-tune's body);
    returns the names of `target`'s parameters that got none: its new ones (a classifier head,
    rows of a grown vocabulary), which keep their initialisation."""
    theirs, ours = source.state_dict(), target.state_dict()
    target.load_state_dict({k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}, strict=False)
    target.tie_weights()
    return tuple(n for n, p in target.named_parameters() if n not in theirs or theirs[n].shape != p.shape)


def count_parameters(config_or_name: Config | str, **overrides) -> dict[str, int]:
    """Parameter counts by kind, on the meta device: no memory for weights, any size. Takes
    what `build_model` takes: a Config or a preset name (plus field overrides).

    Every block of a stack has the same shape (models/stack.py), so each count is affine in each
    stack's depth: it is read off models one and two layers deep instead of building all of them
    (`plmlab info --list` builds every preset)."""
    config = resolve_config(config_or_name, **overrides)
    depths = {"n_layers": config.n_layers}
    if config.arch == "encoder-decoder":
        depths["n_decoder_layers"] = config.decoder_layers
    shallow = {name: 1 for name in depths}
    base = _count_by_kind(config.replace(**shallow))
    counts = dict(base)
    for name, depth in depths.items():
        deeper = _count_by_kind(config.replace(**{**shallow, name: 2}))
        for kind in counts:
            counts[kind] += (depth - 1) * (deeper[kind] - base[kind])  # one more block each
    total = sum(counts.values())
    return {"params": total, "params_non_embedding": total - counts["embeddings"], **counts}


def _count_by_kind(config: Config) -> dict[str, int]:
    with _MetaWeights():
        model = SKELETONS[config.arch](config)
    breakdown = {"embeddings": 0, "attention": 0, "mlp": 0, "norms": 0, "head": 0, "other": 0}
    seen = set()
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        breakdown[_kind(name)] += p.numel()
    return breakdown


class _MetaWeights(TorchFunctionMode):
    """Builds a model to count: its weights on the meta device (no memory, any size) and left as
    they are, its small buffers (rotary frequencies, sinusoid tables) computed on the CPU. Meta
    runs torch.nn.init and tensor arithmetic through Python reference kernels: about 1 ms a tensor,
    and their first use imports torch._dynamo (seconds)."""

    FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full}  # what nn modules make weights with

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]
        if func in self.FACTORIES and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _kind(name: str) -> str:
    if name.startswith(("embed.", "decoder_embed.")):  # BART: each stack its own positions
        return "embeddings"
    if "norm" in name.split(".")[-2]:
        return "norms"
    if ".attn." in name or ".cross." in name or ".relative." in name:
        return "attention"
    if ".mlp." in name:
        return "mlp"
    if name.startswith(("head.", "pooler.", "pair_head.", "classifier.")):
        return "head"
    return "other"
