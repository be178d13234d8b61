"""`plmlab plot DIR [DIR ...]`: training curves from run directories' metrics.jsonl (see plmlab.plotting).

One run: DIR/plots.png by default; several runs are overlaid in ./compare.png (or --out).
Needs matplotlib: pip install plmlab[plot].
"""

from __future__ import annotations

from ..plotting import DEFAULT_METRICS, X_AXES, plot_runs
from .args import non_negative_int


def register(sub) -> None:
    p = sub.add_parser("plot", help="plot training curves of one or more runs into a PNG",
                       description=__doc__.replace("`", ""))
    p.add_argument("dirs", nargs="+", metavar="DIR", help="run directory (holding metrics.jsonl), or the file itself")
    p.add_argument("--out", metavar="FILE_OR_DIR",
                   help="image file (.png, .svg, .pdf) or directory (default: DIR/plots.png for one run, "
                        "./compare.png for several)")
    p.add_argument("--metrics", metavar="M,M,...",
                   help=f"comma-separated metrics, one panel each; val_X joins X's panel "
                        f"(default: those of {','.join(DEFAULT_METRICS)} the runs have)")
    p.add_argument("--x", choices=X_AXES, default="step", help="x axis (default step)")
    p.add_argument("--smooth", type=non_negative_int, metavar="N",
                   help="EMA span in logged points for the smoothed curve (default ~5%% of the points; 0: raw only)")
    p.add_argument("--log-y", action="store_true", help="logarithmic y axes")
    p.set_defaults(func=run)


def run(args) -> int:
    metrics = args.metrics.split(",") if args.metrics is not None else None
    out = plot_runs(args.dirs, args.out, metrics=metrics, x=args.x, smooth=args.smooth, log_y=args.log_y)
    print(f"wrote {out}")
    return 0
