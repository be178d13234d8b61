"""Do the fine-tuning defaults learn on the examples/ data at the -mini sizes? Old against new.

    PYTHONPATH=src python bench/finetune_defaults.py --bert runs/bert --t5 runs/t5 [--seeds 0 1]
        [--out bench/results/finetune_defaults.jsonl]

The models are `plmlab pretrain --preset bert-mini --objective mlm --max-steps 200` and
`--preset t5-mini --objective span-corruption --max-steps 200` (a few minutes of a CPU each).
Each arm is `finetune()` on examples/ with the options of the arm only: "old" the defaults
before issue 20 (lr 5e-5, 3 epochs, LoRA at the same lr), "new" none given (the defaults of
finetune/options.py). One line of JSON per run (task, arm, seed, the first and last epoch's
evaluation, the derived lr / epochs) is appended to --out. Not a test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from plmlab.finetune import FinetuneOptions, finetune
from plmlab.train.lora import LoraOptions

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TASKS = {  # name -> (model flag, task, train, eval, extra, LoRA)
    "classification": ("bert", "classification", "sentiment-train.csv", "sentiment-dev.csv", {}, False),
    "token-classification": ("bert", "token-classification", "ner-train.jsonl", "ner-dev.jsonl", {}, False),
    "classification-lora": ("bert", "classification", "sentiment-train.csv", "sentiment-dev.csv", {}, True),
    "text2text": ("t5", "text2text", "text2text-train.jsonl", "text2text-dev.jsonl", {"prefix": "sentiment: "}, False),
}
ARMS = {"old": {"lr": 5e-5, "epochs": 3}, "new": {}}


def run(models: dict, name: str, arm: str, seed: int, work: Path) -> dict:
    model, task, train, dev, extra, lora = TASKS[name]
    derived = []
    start = time.time()
    history = finetune(FinetuneOptions(model=models[model], task=task, train=str(EXAMPLES / train),
                                       eval=str(EXAMPLES / dev), out=str(work / f"{name}-{arm}-{seed}"), seed=seed,
                                       lora=LoraOptions(r=8, alpha=16) if lora else None, extra=extra, threads=1,
                                       progress="none", overwrite=True, **ARMS[arm]),
                       log=lambda line: derived.append(line) if line.startswith(("lr ", "epochs ")) else None)
    keys = [k for k in history[-1] if k.startswith("eval_")]
    return {"task": name, "arm": arm, "seed": seed, "seconds": round(time.time() - start), "derived": derived,
            "first": {k: round(history[0][k], 3) for k in keys}, "last": {k: round(history[-1][k], 3) for k in keys},
            "cpu": torch.backends.cpu.get_cpu_capability()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bert", required=True)
    p.add_argument("--t5", required=True)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--work", default="/tmp/finetune_defaults")
    p.add_argument("--out", default="bench/results/finetune_defaults.jsonl")
    args = p.parse_args()
    torch.set_num_threads(1)
    for name in args.tasks:
        for seed in args.seeds:
            for arm in ARMS:
                record = run({"bert": args.bert, "t5": args.t5}, name, arm, seed, Path(args.work))
                print(json.dumps(record), flush=True)
                with open(args.out, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
