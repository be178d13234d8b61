"""The objective of a run, from `--objective NAME` and its options (`PretrainOptions.objective_options`).

Every objective declares its options as a dataclass (`Objective.Options`, objectives/options.py)
and the models it fits (`Objective.fits`): an option it does not take, a value of the wrong kind
or out of range, or a model it cannot train is a one-line error before anything is trained.
The CLI offers the common options as flags (generated from the same declarations) and every
one as `--objective-set KEY=VALUE`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import PlmlabError
from ..objectives import Objective, get_objective
from ..objectives.options import parse_option_items
from .setup import read_json_or_yaml


def accepted_options(cls: type[Objective]) -> set[str]:
    """The option names the objective declares (its `Options` dataclass)."""
    return set(cls.Options.names())


def check_objective_options(name: str, options: dict[str, Any]) -> None:
    """Unknown keys, wrong kinds and out-of-range values, each one line; before any work."""
    cls = get_objective(name)
    known = accepted_options(cls)
    unknown = sorted(set(options) - known)
    if unknown:
        shown = ", ".join(sorted(known)) or "none"
        raise PlmlabError(f"objective {name} has no option {', '.join(unknown)} (its options: {shown})")
    cls.parse_options(options)


def check_objective_fits(name: str, config) -> None:
    """Refuse a model the objective cannot train (clm on T5, GLM on BERT, ...), naming presets that fit."""
    get_objective(name).check_fits(config)


def build_objective(name: str, tokenizer, seq_len: int, options: dict[str, Any]) -> Objective:
    check_objective_options(name, options)
    return get_objective(name)(tokenizer, seq_len, **options)


# --- the CLI's forms -------------------------------------------------------------------------------
def parse_objective_set(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` items; a value is JSON when it parses as JSON, else the string."""
    return parse_option_items(items, "--objective-set")


def read_mixture(path: str) -> dict[str, Any]:
    """A `mixture` description: a JSON / YAML list of tasks, or an object with "tasks" and other
    mixture options (span_rate, max_target_length, truncate, noise_density, ...). A task is
    {"path": FILE.jsonl, "rate": R, "prefix": TEXT, "name": optional}; a relative path is taken
    from the description's folder (and stored absolute, so the run resumes from anywhere)."""
    file = Path(path)
    data = read_json_or_yaml(path, "mixture file")
    if isinstance(data, list):
        data = {"tasks": data}
    if not isinstance(data, dict) or not isinstance(data.get("tasks", []), list):
        raise PlmlabError(f'{path}: expected a list of tasks or an object with "tasks": [...]')
    tasks = []
    for i, task in enumerate(data.get("tasks", [])):
        if not isinstance(task, dict) or not isinstance(task.get("path"), str):
            raise PlmlabError(f'{path}: task {i}: expected {{"path": FILE, "rate": R, "prefix": TEXT}}, got {task!r}')
        task_path = Path(task["path"])
        if not task_path.is_absolute():
            task_path = file.resolve().parent / task_path
        tasks.append({**task, "path": str(task_path)})
    return {**data, "tasks": tasks}


def parse_glm_rates(text: str) -> dict[str, float]:
    """`mask=0.5,smask=0.3,gmask=0.2` (or a JSON object of the same) -> GLM's *_rate options."""
    text = text.strip()
    try:
        raw = json.loads(text) if text.startswith("{") else dict(part.split("=", 1) for part in text.split(",") if part)
        rates = {f"{k.strip().removesuffix('_rate')}_rate": float(v) for k, v in raw.items()}
    except (ValueError, TypeError, AttributeError):
        raise PlmlabError(f"invalid --glm-rates {text!r}: expected e.g. mask=0.5,smask=0.3,gmask=0.2") from None
    bad = sorted(set(rates) - {"mask_rate", "smask_rate", "gmask_rate"})
    if bad:
        raise PlmlabError(f"invalid --glm-rates: {', '.join(bad)}; the modes are mask, smask and gmask")
    return rates
