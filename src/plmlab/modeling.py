"""Build a model from a Config or a preset name; count parameters without allocating them."""

from __future__ import annotations

import torch

from .config import Config
from .models import SKELETONS, PretrainedModel
from .presets import get_preset


def resolve_config(config_or_name: Config | str, **overrides) -> Config:
    config = get_preset(config_or_name) if isinstance(config_or_name, str) else config_or_name
    return config.replace(**overrides) if overrides else config


def build_model(config_or_name: Config | str, device: str | torch.device | None = None, **overrides) -> PretrainedModel:
    """A freshly initialised model (in train mode) of the skeleton that `config.arch` names."""
    config = resolve_config(config_or_name, **overrides)
    with torch.device(device or "cpu"):
        return SKELETONS[config.arch](config)


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
    what `build_model` takes: a Config or a preset name (plus field overrides)."""
    config = resolve_config(config_or_name, **overrides)
    with torch.device("meta"):
        model = SKELETONS[config.arch](config)
    breakdown = {"embeddings": 0, "attention": 0, "mlp": 0, "norms": 0, "head": 0, "other": 0}
    seen = set()
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        breakdown[_kind(name)] += p.numel()
    total = sum(breakdown.values())
    return {"params": total, "params_non_embedding": total - breakdown["embeddings"], **breakdown}


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
