"""How studies score a trained model, all through plmlab.evaluate and plmlab.finetune:

    mlm_accuracy(trained, corpus)            masked-token accuracy on held-out text, under BERT's
                                             standard corruption (the same yardstick for every arm)
    suite(trained, shots, n_items)           the built-in multiple-choice suite (CORE, per task)
    finetune_swapped(trained, workdir, ...)  fine-tune an encoder on a built-in classification task
                                             and return its held-out accuracy

The built-in classification task ("swapped"): a sentence as written (label `ok`) or with two
of its words swapped (`swapped`), from the built-in suite's swapped_words items, which are
drawn from the validation documents pretraining never trains on. A CoLA-like acceptability
task that needs word order, balanced, 50 % by chance.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import torch

from ..data.corpus import corpus_documents
from ..evaluate.builtin import evaluate_suite
from ..evaluate.builtin_tasks import build_task, validation_documents
from ..evaluate.mlm import evaluate_mlm
from ..finetune import FinetuneOptions, finetune
from ..train.data import fixed_batches
from ..train.objective_setup import build_objective
from ..train.saving import save_final
from ..train.task import PretrainTask
from .harness import Trained


def held_out_texts(corpus: str = "builtin", n: int = 40) -> list[str]:
    """The first n validation documents of the corpus (pretraining's split), one text each."""
    return [" ".join(sentences) for _, sentences in validation_documents(corpus_documents(corpus))[:n]]


def mlm_accuracy(trained: Trained, corpus: str = "builtin", n_texts: int = 40, seed: int = 0) -> float:
    texts = held_out_texts(corpus, n_texts)
    limit = min(trained.config.max_positions, trained.setup.options.seq_len)
    result = evaluate_mlm(trained.model, trained.tokenizer, texts, seed=seed, max_length=limit, pll=False)
    return float(result.metrics["masked_accuracy"])


def suite(trained: Trained, shots=(0,), n_items: int = 100, seed: int = 0, tasks=None) -> dict:
    """{"core": ..., "TASK@K": accuracy, ...} of the built-in suite."""
    metrics = evaluate_suite(trained.model, trained.tokenizer, shots=shots, seed=seed, n_items=n_items,
                             tasks=tasks).metrics
    out = {"core": metrics["core"]}
    for row in metrics["tasks"]:
        out[f"{row['task']}@{row['shots']}"] = row["accuracy"]
    return out


def swapped_records(n_items: int, seed: int = 0) -> list[dict]:
    """Two records per swapped_words item: the sentence as written and one swapped copy."""
    records = []
    for item in build_task("swapped_words", n_items, seed):
        right = item["choices"][item["label"]]
        wrong = item["choices"][(item["label"] + 1) % len(item["choices"])]
        records += [{"text": right, "label": "ok"}, {"text": wrong, "label": "swapped"}]
    return records


def finetune_swapped(trained: Trained, workdir: Path, n_items: int = 200, epochs: int = 2, lr: float = 1e-3,
                     batch_size: int = 16, seed: int = 0) -> float:
    """Held-out accuracy after fine-tuning the (encoder) model on the swapped task (80 / 20 split
    of the items, so the sentences of the evaluation never appear in training)."""
    workdir = Path(workdir)
    records = swapped_records(n_items, seed=0)  # the same items for every arm and seed
    cut = 2 * int(0.8 * (len(records) // 2))
    for name, part in (("train", records[:cut]), ("eval", records[cut:])):
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    (workdir / "pretrained").mkdir(parents=True, exist_ok=True)
    pretrained = save_final(trained.model, workdir / "pretrained", trained.tokenizer)
    options = FinetuneOptions(model=str(pretrained), task="classification", train=str(workdir / "train.jsonl"),
                              eval=str(workdir / "eval.jsonl"), out=str(workdir / "finetune"), epochs=epochs,
                              lr=lr, batch_size=batch_size, seed=seed, device="cpu", progress="none",
                              save_every=0, truncate=True,
                              max_length=min(trained.config.max_positions, trained.setup.options.seq_len))
    history = finetune(options, log=lambda *_: None)
    return float(history[-1]["eval_accuracy"])


def objective_eval(trained: Trained, objective: str, options: dict | None = None, batches: int | None = None) -> dict:
    """The trained model on the validation split as another objective makes it (val_loss and
    that objective's val_* accuracies): e.g. a model pretrained with SOP scored on NSP pairs."""
    o = trained.setup.options
    if batches is not None:
        o = dataclasses.replace(o, eval_batches=batches)
    made = build_objective(objective, trained.tokenizer, o.seq_len, dict(options or {}))
    setup = trained.setup
    task = PretrainTask(made, setup.train_data, setup.val_data, o, fingerprint=setup.fingerprint)
    with torch.no_grad():
        return task.evaluate(trained.model, contextlib.nullcontext, torch.device("cpu"))


def pair_batches(trained: Trained, objective: str, batches: int) -> list[dict]:
    """The validation batches of a pair objective (nsp / sop) for this model's tokenizer."""
    o = trained.setup.options
    made = build_objective(objective, trained.tokenizer, o.seq_len, {})
    return fixed_batches(made, trained.setup.val_data, o.seed, o.batch_size, batches)
