"""`plmlab experiment`: the notes' claims as seeded studies with a table, plots and a verdict.

    plmlab experiment list
    plmlab experiment run NAME|all [--scale smoke|default|large] [--seeds N] --out DIR
    plmlab experiment report DIR [--index FILE [--note TEXT]]

A thin layer over plmlab.experiments (run_experiment, write_report, write_index).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import PlmlabError
from ..experiments import EXPERIMENTS, SCALES, run_experiment, write_index, write_report
from .args import positive_int


def register(sub) -> None:
    p = sub.add_parser("experiment", help="run the notes' claims as small seeded studies (list, run, report)",
                       description=__doc__.replace("`", ""))
    verbs = p.add_subparsers(dest="action", metavar="ACTION")
    verbs.required = True
    verbs.add_parser("list", help="one line per experiment: name, claim, default-scale runtime"
                     ).set_defaults(func=list_experiments)
    run = verbs.add_parser("run", help="run an experiment's arms x seeds (resumable) and write its report")
    run.add_argument("name", metavar="NAME", help="an experiment (see `plmlab experiment list`) or all")
    run.add_argument("--scale", choices=SCALES, default="default",
                     help="smoke: seconds (tests); default: minutes on 2 CPU cores; large: a GPU")
    run.add_argument("--seeds", type=positive_int, metavar="N", help="seeds per arm (default: the study's)")
    run.add_argument("--out", required=True, metavar="DIR", help="folder of experiment folders (DIR/NAME/)")
    run.set_defaults(func=run_command)
    report = verbs.add_parser("report", help="rebuild report.md, results.json and plots from saved runs")
    report.add_argument("dir", metavar="DIR", help="an experiment folder, or a folder of them")
    report.add_argument("--index", metavar="FILE", help="also assemble every report into one Markdown page")
    report.add_argument("--note", default="", metavar="TEXT", help="a paragraph for the page, after its introduction "
                        "(where and how the runs were made)")
    report.set_defaults(func=report_command)


def list_experiments(args) -> int:
    width = max(map(len, EXPERIMENTS))
    for name, e in EXPERIMENTS.items():
        print(f"{name:<{width}}  {e.claim}  [{e.runtime}]")
    return 0


def run_command(args) -> int:
    if args.name != "all" and args.name not in EXPERIMENTS:
        from ..experiments import get_experiment

        get_experiment(args.name)  # the one-line error with close matches
    folder = run_experiment(args.name, scale=args.scale, seeds=args.seeds, out=args.out)
    print(f"wrote {folder}")
    return 0


def report_command(args) -> int:
    root = Path(args.dir)
    if not root.is_dir():
        raise PlmlabError(f"{root} is not a folder")
    folders = [root] if (root / "meta.json").is_file() else sorted(p.parent for p in root.glob("*/meta.json"))
    if not folders:
        raise PlmlabError(f"{root} holds no experiment folder (no meta.json in it or its sub-folders)")
    for folder in folders:
        print(f"wrote {write_report(folder)}")
    if args.index:
        print(f"wrote {write_index(folders, args.index, note=args.note)}")
    return 0
