"""The fine-tuning loop, the same for every task: AdamW with linear warm-up and decay (BERT
paper, appendix A.3), one evaluation per epoch, `metrics.jsonl`, and a final checkpoint in
the Hugging Face layout (plus the tokenizer) under OUT/final.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import PlmlabError
from .tasks import get_task


@dataclass
class FinetuneOptions:
    model: str
    task: str
    train: str
    out: str
    eval: str | None = None
    tokenizer: str | None = None
    epochs: int = 3
    batch_size: int = 16
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of the steps
    max_length: int | None = None
    truncate: bool = False
    labels: str | None = None  # comma-separated label names, in id order
    seed: int = 0
    device: str | None = None
    extra: dict = field(default_factory=dict)  # task-specific options


def finetune(options: FinetuneOptions, log=print) -> list[dict]:
    """Fine-tune, evaluate each epoch, save OUT/final; returns the per-epoch metrics."""
    from .. import build_model, save_pretrained
    from ..cli.fill_mask import load_model_and_tokenizer

    if options.epochs < 1 or options.batch_size < 1 or options.lr <= 0:
        raise PlmlabError("epochs and batch size must be at least 1 and the learning rate positive")
    task = get_task(options.task)({**vars(options), **options.extra})
    base, tokenizer = load_model_and_tokenizer(options.model, options.tokenizer)
    train = task.read(options.train)
    evaluation = task.read(options.eval) if options.eval else None
    config = task.model_config(base.config, train)
    device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(options.seed)  # the new head's initialisation
    model = build_model(config)
    _copy_matching(base, model)
    model.to(device)
    del base
    train_examples = [task.encode(r, tokenizer, config) for r in train]
    eval_batches = _batches(task, [task.encode(r, tokenizer, config) for r in evaluation], tokenizer,
                            options.batch_size) if evaluation else []
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    history = _train(model, task, tokenizer, train_examples, eval_batches, options, device, out, log)
    save_pretrained(model.cpu().eval(), out / "final", tokenizer=tokenizer)
    log(f"saved {out / 'final'}")
    return history


def _copy_matching(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Pretrained weights wherever names and shapes agree; the new head keeps its init."""
    theirs = source.state_dict()
    ours = target.state_dict()
    state = {k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}
    target.load_state_dict(state, strict=False)
    target.tie_weights()


def _batches(task, examples, tokenizer, size: int, order=None) -> list[dict]:
    order = range(len(examples)) if order is None else order
    order = list(order)
    return [task.collate([examples[i] for i in order[s:s + size]], tokenizer) for s in range(0, len(order), size)]


def _train(model, task, tokenizer, examples, eval_batches, o: FinetuneOptions, device, out: Path, log) -> list[dict]:
    steps = o.epochs * math.ceil(len(examples) / o.batch_size)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]  # biases and norms
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}], lr=o.lr)
    warm = max(1, int(o.warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    history = []
    metrics_file = (out / "metrics.jsonl").open("w")
    for epoch in range(1, o.epochs + 1):
        model.train()
        order = np.random.default_rng([o.seed, epoch]).permutation(len(examples))
        losses = []
        for batch in _batches(task, examples, tokenizer, o.batch_size, order):
            loss = task.loss(model, {k: v.to(device) for k, v in batch.items()})
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            losses.append(float(loss.detach()))
        record = {"epoch": epoch, "train_loss": float(np.mean(losses))}
        if eval_batches:
            scores = task.evaluate(model, [{k: v.to(device) for k, v in b.items()} for b in eval_batches])
            record.update({f"eval_{k}": v for k, v in scores.items()})
        history.append(record)
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()
        log("epoch {}: ".format(epoch) + ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch"))
    metrics_file.close()
    return history
