"""AdamW with decoupled weight decay on matrices only, and warmup + cosine learning rate.

Weight decay (Loshchilov & Hutter 2019) goes to every parameter with two or more dimensions
(linear weights, embedding and position tables) and never to vectors (norm gains, biases):
decaying a LayerNorm gain towards zero fights the normalisation, and biases are too few to
matter. This is nanoGPT's rule; tied embeddings are one parameter and are counted once.

The schedule is a pure function of the step, so resuming needs no scheduler state: linear
warmup to `lr` over `warmup` steps, then half a cosine down to `min_lr` at `total` steps
(GPT-3 paper, section B; Chinchilla and LLaMA use the same shape) for pretraining, or a
linear decay to 0 (BERT paper, appendix A.3) for fine-tuning: `schedule(name, ...)`.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: matrices (decayed) and vectors (not); tied parameters appear once."""
    decay, no_decay = [], []
    for p in model.parameters():  # deduplicates tied weights
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float,
                   betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW over `param_groups`: fused on CUDA, foreach (multi-tensor) otherwise."""
    device = next(model.parameters()).device.type
    fused = device == "cuda" and _has_fused()
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps,
                             fused=fused or None, foreach=None if fused else True)


def _has_fused() -> bool:
    import inspect

    return "fused" in inspect.signature(torch.optim.AdamW).parameters


def lr_at(step: int, lr: float, min_lr: float, warmup: int, total: int) -> float:
    """Learning rate of update number `step` (1-based): warmup, then cosine to `min_lr`.

    lr_at(warmup) == lr and lr_at(total) == min_lr; past `total` it stays at `min_lr`.
    """
    if warmup > 0 and step <= warmup:
        return lr * step / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def linear_lr_at(step: int, lr: float, warmup: int, total: int) -> float:
    """Learning rate of update `step` (1-based): linear warmup to `lr` at `warmup`, then a linear
    decay (BERT, appendix A.3) whose last update, at `total`, uses lr / (total - warmup)."""
    decay = max(0.0, (total - step + 1) / max(1, total - warmup))
    return lr * (min(step / warmup, decay) if warmup > 0 else min(1.0, decay))


SCHEDULES = ("cosine", "linear")


def schedule(name: str, lr: float, warmup: int, total: int, min_lr: float = 0.0):
    """step -> learning rate: `cosine` (to min_lr, pretraining) or `linear` (to 0, fine-tuning)."""
    if name == "cosine":
        return lambda step: lr_at(step, lr, min_lr, warmup, total)
    if name == "linear":
        return lambda step: linear_lr_at(step, lr, warmup, total)
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
