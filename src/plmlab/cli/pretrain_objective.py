"""`plmlab pretrain`'s objective options: `--objective-set KEY=VALUE` and flags for the common ones.

Each flag is one constructor option of the objective (see `plmlab.train.objective_setup`);
a flag the chosen objective does not take is an error, like an unknown --objective-set key.
"""

from __future__ import annotations

# flag -> (option name, argparse keyword arguments)
FLAGS = {
    "--masking": ("masking", {"choices": ("static", "dynamic"),
                              "help": "MLM masking: dynamic (a new mask every epoch, RoBERTa) or static (BERT)"}),
    "--static-copies": ("static_copies", {"type": int, "metavar": "N",
                                          "help": "static masking: distinct masks per example (default 10)"}),
    "--whole-word": ("whole_word", {"action": "store_const", "const": True,
                                    "help": "MLM: mask whole words"}),
    "--ngram": ("ngram", {"type": int, "metavar": "N", "help": "MLM: mask n-grams of up to N units (ALBERT: 3)"}),
    "--mask-prob": ("mask_prob", {"type": float, "metavar": "P", "help": "MLM: share of tokens masked (0.15)"}),
    "--input-format": ("input_format", {"metavar": "FORMAT",
                                        "help": "encoder input format: full-sentences | doc-sentences | "
                                                "segment-pair | sentence-pair"}),
    "--noise-density": ("noise_density", {"type": float, "metavar": "P",
                                          "help": "span corruption: share of tokens dropped (0.15)"}),
    "--mean-span-length": ("mean_noise_span_length", {"type": float, "metavar": "L",
                                                      "help": "span corruption: mean noise span length (3)"}),
}


def add_objective_arguments(p) -> None:
    group = p.add_argument_group("objective options (see plmlab objective NAME)")
    group.add_argument("--objective-set", action="append", default=[], metavar="KEY=VALUE",
                       help="an option of the objective, the value parsed as JSON (repeatable)")
    for flag, (name, kwargs) in FLAGS.items():
        group.add_argument(flag, dest=f"objective__{name}", **kwargs)
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
