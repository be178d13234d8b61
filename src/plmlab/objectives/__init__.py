"""Pretraining objectives, by the name the CLI uses (`--objective NAME`).

Each module here defines `OBJECTIVES: dict[str, type[Objective]]`; the registry merges them.
"""

from __future__ import annotations

from ..errors import PlmlabError
from ..registry import import_present
from ..masks import IGNORE_INDEX
from .base import Objective, example_rng

MODULES = ("clm", "mlm", "span", "mixture", "glm", "tlm", "bart")


OBJECTIVES: dict[str, type[Objective]] = {
    name: cls for module in import_present(__name__, MODULES) for name, cls in module.OBJECTIVES.items()
}


def get_objective(name: str) -> type[Objective]:
    if name not in OBJECTIVES:
        raise PlmlabError(f"unknown objective {name!r}; choose one of {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name]


__all__ = ["IGNORE_INDEX", "OBJECTIVES", "Objective", "example_rng", "get_objective"]
