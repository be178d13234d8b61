"""Pretraining objectives, by the name the CLI uses (`--objective NAME`).

Each module here defines `OBJECTIVES: dict[str, type[Objective]]`; the registry merges them.
"""

from __future__ import annotations

import importlib

from ..errors import PlmlabError
from .base import IGNORE_INDEX, Objective, example_rng

MODULES = ("clm", "mlm", "pairs", "span", "glm")


def _load() -> dict[str, type[Objective]]:
    table: dict[str, type[Objective]] = {}
    for name in MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:  # an objective family not written yet
            if e.name != f"{__name__}.{name}":
                raise
            continue
        table.update(module.OBJECTIVES)
    return table


OBJECTIVES: dict[str, type[Objective]] = _load()


def get_objective(name: str) -> type[Objective]:
    if name not in OBJECTIVES:
        raise PlmlabError(f"unknown objective {name!r}; choose one of {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name]


__all__ = ["IGNORE_INDEX", "OBJECTIVES", "Objective", "example_rng", "get_objective"]
