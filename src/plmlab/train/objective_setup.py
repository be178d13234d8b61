"""The objective of a run, from `--objective NAME` and its options (`PretrainOptions.objective_options`).

Options are the objective's constructor keyword arguments (`mask_prob`, `masking`, `input_format`,
`noise_density`, `tasks`, `smask_rate`, ...). The CLI offers the common ones as flags and every
one as `--objective-set KEY=VALUE`; an option the objective does not take is a one-line error
naming those it does (found by introspecting its constructor), before anything is trained.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from ..errors import PlmlabError
from ..objectives import Objective, get_objective
from .setup import read_json_or_yaml

# Options taken through **kwargs, which the signature alone does not show.
_KWARG_OPTIONS = {"MaskedLM": ("mlm", "MASKING_OPTIONS"), "BlankInfilling": ("glm", "known")}


def accepted_options(cls: type[Objective]) -> set[str]:
    """The option names the objective's constructor takes (besides tokenizer and seq_len)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is Objective or klass is object or "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break  # no **kwargs: nothing reaches the classes above
        extra = _KWARG_OPTIONS.get(klass.__name__)
        if extra is not None:
            module = __import__(f"plmlab.objectives.{extra[0]}", fromlist=["_"])
            names |= set(getattr(module, extra[1], ()) or getattr(klass, extra[1], ()))
            break
        if klass.__name__ == "Mixture":  # **span_options go to SpanCorruption
            from ..objectives.span import SpanCorruption

            names |= accepted_options(SpanCorruption)
            break
    return names - {"self", "tokenizer", "seq_len"}


def check_objective_options(name: str, options: dict[str, Any]) -> None:
    cls = get_objective(name)
    known = accepted_options(cls)
    unknown = sorted(set(options) - known)
    if unknown:
        shown = ", ".join(sorted(known)) or "none"
        raise PlmlabError(f"objective {name} has no option {', '.join(unknown)} (its options: {shown})")


def build_objective(name: str, tokenizer, seq_len: int, options: dict[str, Any]) -> Objective:
    check_objective_options(name, options)
    try:
        return get_objective(name)(tokenizer, seq_len, **options)
    except (TypeError, ValueError) as e:  # a value of the wrong kind ("ngram": "x")
        raise PlmlabError(f"objective {name}: invalid option value ({e})") from None


# --- the CLI's forms -------------------------------------------------------------------------------
def parse_objective_set(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` items; a value is JSON when it parses as JSON, else the string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise PlmlabError(f"invalid --objective-set {item!r}: expected KEY=VALUE")
        try:
            out[key.strip().replace("-", "_")] = json.loads(raw)
        except ValueError:
            out[key.strip().replace("-", "_")] = raw
    return out


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
