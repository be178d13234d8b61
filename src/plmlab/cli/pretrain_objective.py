"""`plmlab pretrain`'s objective options: `--objective-set KEY=VALUE` and flags for the common ones.

The flags are generated from the objectives' declared options (`Objective.Options`: a field
whose rule names a `flag`), so each is one option with its own help and default; a flag the
chosen objective does not take is an error, like an unknown --objective-set key.
`--mixture FILE` and `--glm-rates` are two composite forms (a file of tasks; three rates).
"""

from __future__ import annotations

from ..objectives import OBJECTIVES
from ..objectives.options import Rule


def objective_flags() -> dict[str, tuple[str, Rule, list[str]]]:
    """flag -> (option name, its rule, the objectives that take it), from every objective's Options."""
    flags: dict[str, tuple[str, Rule, list[str]]] = {}
    for objective, cls in OBJECTIVES.items():
        for name, rule in cls.Options.rules().items():
            if rule.flag is None:
                continue
            known = flags.setdefault(rule.flag, (name, rule, []))
            if known[0] != name:  # one flag, one option everywhere
                raise RuntimeError(f"{rule.flag} names both {known[0]} and {name}")
            known[2].append(objective)
    return flags


def _argparse_kwargs(name: str, rule: Rule, objectives: list[str]) -> dict:
    default = "" if rule.kind is bool else f"; default {_default_text(objectives[0], name)}"
    kwargs = {"help": f"{rule.help} ({', '.join(objectives)}{default})"}
    if rule.kind is bool:
        return {**kwargs, "action": "store_const", "const": True}
    if rule.choices is not None:
        return {**kwargs, "choices": rule.choices}
    return {**kwargs, "type": rule.from_text, "metavar": rule.metavar or "VALUE"}


def _default_text(objective: str, name: str) -> str:
    """The first objective's default (a variant may differ: ALBERT's ngram is 3)."""
    cls = OBJECTIVES[objective]
    value = cls.option_defaults.get(name, cls.Options.__dataclass_fields__[name].default)
    return "the format of the objective" if value is None else str(value)


def add_objective_arguments(p) -> None:
    group = p.add_argument_group("objective options (see plmlab objective NAME)")
    group.add_argument("--objective-set", action="append", default=[], metavar="KEY=VALUE",
                       help="an option of the objective, the value parsed as JSON (repeatable)")
    for flag, (name, rule, objectives) in objective_flags().items():
        group.add_argument(flag, dest=f"objective__{name}", **_argparse_kwargs(name, rule, objectives))
    group.add_argument("--mixture", metavar="FILE",
                       help='mixture objective: JSON/YAML list of tasks {"path": FILE.jsonl, "rate": R, '
                            '"prefix": TEXT} (or an object with "tasks" and span_rate, ...)')
    group.add_argument("--glm-rates", metavar="RATES",
                       help="GLM objectives: mode rates, e.g. mask=0.5,smask=0.3,gmask=0.2")


def objective_options_from_args(args) -> dict | None:
    """The objective options given on the command line; None when none were."""
    from ..train.objective_setup import parse_glm_rates, parse_objective_set, read_mixture

    options: dict = {}
    if getattr(args, "mixture", None):
        options.update(read_mixture(args.mixture))
    if getattr(args, "glm_rates", None):
        options.update(parse_glm_rates(args.glm_rates))
    options.update(parse_objective_set(getattr(args, "objective_set", []) or []))
    options.update({key.removeprefix("objective__"): value for key, value in vars(args).items()
                    if key.startswith("objective__") and value is not None})
    return options or None
