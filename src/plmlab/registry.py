"""Registries by module: a family, objective or verb is one module, found by name."""

from __future__ import annotations

import importlib
from types import ModuleType

# TEMPORARY, for the coordinator to drop at merge: the CLI still lists "evaluate", a verb that
# has not landed; the pipelines branch removes it from cli.VERBS. Nothing else may go here.
_NOT_LANDED = frozenset({"plmlab.cli.evaluate"})


def import_present(package: str, names: tuple[str, ...]) -> list[ModuleType]:
    """Import `package.name` for every listed name. A listed module must exist: a registry that
    skipped a missing one would hide a broken or misnamed module (and its tests would skip
    instead of fail), so its ModuleNotFoundError propagates like any other import error."""
    return [importlib.import_module(full) for full in (f"{package}.{n.replace('-', '_')}" for n in names)
            if full not in _NOT_LANDED]
