"""Conversion is a table: each Hugging Face family is a list of rules mapping our parameter
names to theirs, with a small named transform where the layouts differ.

A rule's names may hold `{i}` (the layer index; `{j}` for the decoder layers of an
encoder-decoder). `to_ours` receives the HF tensors in the
order of `theirs` and returns our tensor; `to_theirs` does the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..config import Config
from .hfconfig import HFConfig

Tensor = torch.Tensor


def _copy(ts: list[Tensor], c: Config) -> Tensor:
    return ts[0]


def _uncopy(t: Tensor, c: Config) -> list[Tensor]:
    return [t]


def _transpose(ts: list[Tensor], c: Config) -> Tensor:
    """GPT-1/2 store Conv1D weights as [in, out], the transpose of nn.Linear."""
    return ts[0].t().contiguous()


def _untranspose(t: Tensor, c: Config) -> list[Tensor]:
    return [t.t().contiguous()]


def _cat(ts: list[Tensor], c: Config) -> Tensor:
    """Fuse separate projections (q, k, v) or (gate, up) along the output dimension."""
    return torch.cat(ts, dim=0)


def qkv_sizes(c: Config) -> list[int]:
    return [c.n_heads * c.dim_head, c.kv_heads * c.dim_head, c.kv_heads * c.dim_head]


def _split_qkv(t: Tensor, c: Config) -> list[Tensor]:
    return [p.contiguous() for p in t.split(qkv_sizes(c), dim=0)]


def _split_halves(t: Tensor, c: Config) -> list[Tensor]:
    return [p.contiguous() for p in t.chunk(2, dim=0)]


@dataclass
class Rule:
    ours: str
    theirs: tuple[str, ...]
    to_ours: Callable[[list[Tensor], Config], Tensor] = _copy
    to_theirs: Callable[[Tensor, Config], list[Tensor]] = _uncopy


def copy(ours: str, theirs: str) -> Rule:
    return Rule(ours, (theirs,))


def transposed(ours: str, theirs: str) -> Rule:
    return Rule(ours, (theirs,), _transpose, _untranspose)


def fused_qkv(ours: str, q: str, k: str, v: str) -> Rule:
    return Rule(ours, (q, k, v), _cat, _split_qkv)


def fused_halves(ours: str, first: str, second: str) -> Rule:
    return Rule(ours, (first, second), _cat, _split_halves)


@dataclass
class Adapter:
    """One Hugging Face `model_type`: config translation plus the parameter table."""

    model_type: str
    prefix: str  # the base model's prefix in head-carrying checkpoints ("transformer.", "model.")
    # keys that may appear in checkpoints and carry nothing we need (old causal-mask buffers)
    ignored: tuple[str, ...] = ()
    # HF keys outside the base model (heads); every other key in `rules` gets the prefix
    top_level: tuple[str, ...] = ("lm_head.",)

    def config_from_hf(self, hf: HFConfig) -> dict:
        """Config fields from a config.json, read through `hf`'s typed getters."""
        raise NotImplementedError

    def config_to_hf(self, c: Config) -> dict:
        raise NotImplementedError

    def mismatch(self, c: Config) -> str | None:
        """Why this family cannot represent `c` (None when it can)."""
        raise NotImplementedError

    def rules(self, c: Config) -> list[Rule]:
        raise NotImplementedError

    def refine(self, c: Config, reader) -> Config:
        """Adjust the config to what the checkpoint's tensors show (`reader`: keys(), get(key));
        e.g. T5 unties the output when a distinct `lm_head.weight` is stored."""
        return c

    def expanded_rules(self, c: Config) -> list[Rule]:
        """Rules with `{i}` expanded for every layer and the base prefix added."""
        out = []
        for rule in self.rules(c):
            theirs = tuple(t if t.startswith(self.top_level) else self.prefix + t for t in rule.theirs)
            # {i}: encoder or decoder-only layers; {j}: decoder layers of an encoder-decoder
            layers = range(c.n_layers) if "{i}" in rule.ours else range(c.decoder_layers) if "{j}" in rule.ours else [0]
            for i in layers:
                out.append(Rule(rule.ours.format(i=i, j=i), tuple(t.format(i=i, j=i) for t in theirs),
                                rule.to_ours, rule.to_theirs))
        return out


def require(checks: dict[str, bool]) -> str | None:
    """The first failed check's description, or None when all hold."""
    for what, ok in checks.items():
        if not ok:
            return what
    return None
