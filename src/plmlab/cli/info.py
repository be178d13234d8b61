"""`plmlab info PRESET_OR_DIR [--set KEY=VALUE ...] [--json]`: architecture and parameter counts
(meta device); `--set` changes Config fields as `plmlab pretrain --set` does, so a user can size a
variant before training it."""

from __future__ import annotations

import json
from pathlib import Path

from ..config import Config, parse_overrides
from ..modeling import count_parameters
from ..presets import get_preset, preset_names
from ..train.model_card import architecture_lines
from ..train.setup import with_overrides


# The course notes (docs/notes-errata.md) describe some families wrongly: a preset whose name starts
# with one of these prefixes (the longest match wins) points to the entry that corrects them, so a
# learner comparing the notes with `plmlab info` finds the source that settles it.
GLM_ORDER = "glms-layer-order-pre-ln-in-the-glm-paper"
NOTES_ERRATA = {
    "bert-": "berts-positions-are-learned-and-absolute",
    "roberta-": "a-larger-bpe-vocabulary-is-not-generally-better",
    "albert-": "albert-is-not-slower-than-bert-at-equal-width",
    "gpt1": "gpt-1-and-bert-are-post-ln-not-pre-norm",
    "gpt2": "the-gpt-tables-columns-are-shifted",
    "gpt3-": "the-gpt-tables-columns-are-shifted",
    "t5-": "t5-pretrains-with-span-corruption-not-bert-style-mlm",
    "t5-11b": "t5-is-not-a-hundred-billion-parameter-model",
    "llama-": "llama-uses-rmsnorm-swiglu-and-rotary-positions",
    "llama2-": "llama-2-only-34b-and-70b-use-gqa",
    "llama3-": "llama-uses-rmsnorm-swiglu-and-rotary-positions",
    "glm-": GLM_ORDER,
    "chatglm-6b": GLM_ORDER,
    "chatglm2-": "chatglm2s-mqa-keeps-two-kv-heads",
    "chatglm3-": "chatglm2s-mqa-keeps-two-kv-heads",
}


def register(sub) -> None:
    p = sub.add_parser("info", help="show a preset's or checkpoint's architecture and parameter count")
    p.add_argument("target", nargs="?", help="preset name or checkpoint directory")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--list", action="store_true", help="list the presets with their sizes")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a Config field first, as `plmlab pretrain --set` does (repeatable)")
    p.set_defaults(func=run)


def load_config(target: str, overrides: list[str] = ()) -> Config:
    if Path(target).is_dir():
        from ..hf import load_config

        config = load_config(target)
    else:
        config = get_preset(target)
    if not overrides:
        return config
    return Config.from_dict(with_overrides(config.to_dict(), parse_overrides(overrides)))


def errata_anchor(name: str) -> str | None:
    """The notes-errata entry for a preset name (None for a checkpoint or an undiscussed family)."""
    matches = [prefix for prefix in NOTES_ERRATA if name.startswith(prefix)]
    return NOTES_ERRATA[max(matches, key=len)] if matches else None


def human(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def run(args) -> int:
    if args.list or not args.target:
        rows = [(name, count_parameters(get_preset(name))["params"]) for name in preset_names()]
        if args.json:
            print(json.dumps({name: n for name, n in rows}))
        else:
            for name, n in rows:
                print(f"{name:<20} {human(n):>10}  {get_preset(name).arch}")
        return 0
    config = load_config(args.target, args.set)
    counts = count_parameters(config)
    savings = {}
    if config.embed_dim != config.d_model or config.shared_layers:
        # ALBERT (Lan et al. 2020, section 3.1): the same shape without factorisation or sharing
        full = count_parameters(config.replace(embedding_dim=None, shared_layers=False))["params"]
        savings = {"params_unshared_unfactorised": full}
    if args.json:
        print(json.dumps({"name": args.target, **counts, **savings, "config": config.to_dict()}))
        return 0
    first, second = architecture_lines(config)
    print(f"{args.target}: {first}")
    print(f"  {second}")
    if config.sliding_window:
        print(f"  sliding window {config.sliding_window} (from layer {config.full_attention_layers})")
    print(f"  parameters: {counts['params']:,} ({human(counts['params'])}); "
          f"non-embedding {counts['params_non_embedding']:,}")
    for kind in ("embeddings", "attention", "mlp", "norms", "head", "other"):
        if counts[kind]:
            print(f"    {kind:<11} {counts[kind]:>16,}  {100 * counts[kind] / counts['params']:5.1f} %")
    if savings:
        full = savings["params_unshared_unfactorised"]
        print(f"  without embedding factorisation and layer sharing (the matching BERT): {full:,} "
              f"({human(full)}), {full / counts['params']:.1f}x more")
    if config.notes.get("params"):
        print(f"  paper: {config.notes['params']}")
    anchor = None if Path(args.target).is_dir() else errata_anchor(args.target)
    if anchor:
        print(f"  notes errata: docs/notes-errata.md#{anchor}")
    return 0
