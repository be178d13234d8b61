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
    return 0
