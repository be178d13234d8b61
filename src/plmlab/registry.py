"""Registries by module: a family, objective or verb is one module, found by name."""

from __future__ import annotations

import importlib
from types import ModuleType


def import_present(package: str, names: tuple[str, ...]) -> list[ModuleType]:
    """Import `package.name` for every listed name. A listed module must exist: a registry that
    skipped a missing one would hide a broken or misnamed module (and its tests would skip
    instead of fail), so its ModuleNotFoundError propagates like any other import error."""
    return [importlib.import_module(f"{package}.{n.replace('-', '_')}") for n in names]
