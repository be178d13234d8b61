"""Registries by module: a family, objective or verb is one module, found by name."""

from __future__ import annotations

import importlib
from types import ModuleType


def import_present(package: str, names: tuple[str, ...]) -> list[ModuleType]:
    """Import `package.name` for each name that exists; a missing one (a capability that has
    not landed, or was left out of a slim install) is skipped, any other import error raised."""
    modules = []
    for name in names:
        full = f"{package}.{name.replace('-', '_')}"
        try:
            modules.append(importlib.import_module(full))
        except ModuleNotFoundError as e:
            if e.name != full:
                raise
    return modules
