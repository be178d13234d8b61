"""Pretraining objectives, by the name the CLI uses (`--objective NAME`)."""

from __future__ import annotations

from ..errors import PlmlabError
from .base import IGNORE_INDEX, Objective, example_rng
from .clm import CausalLM

OBJECTIVES: dict[str, type[Objective]] = {"clm": CausalLM}


def get_objective(name: str) -> type[Objective]:
    if name not in OBJECTIVES:
        raise PlmlabError(f"unknown objective {name!r}; choose one of {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name]


__all__ = ["IGNORE_INDEX", "OBJECTIVES", "Objective", "example_rng", "get_objective"]
