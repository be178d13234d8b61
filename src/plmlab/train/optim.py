"""AdamW with decoupled weight decay on matrices only (or Muon + AdamW), and the learning rate.

Weight decay (Loshchilov & Hutter 2019) goes to every parameter with two or more dimensions
(linear weights, embedding and position tables) and never to vectors (norm gains, biases):
decaying a LayerNorm gain towards zero fights the normalisation, and biases are too few to
matter. This is nanoGPT's rule; tied embeddings are one parameter and are counted once.

The schedule is a pure function of the step, so resuming needs no scheduler state: linear
warmup to `lr` over `warmup` steps, then half a cosine down to `min_lr` at `total` steps
(GPT-3 paper, section B; Chinchilla and LLaMA use the same shape) for pretraining, or a
linear decay to 0 (BERT paper, appendix A.3) for fine-tuning: `schedule(name, ...)`.
Pretraining may also take `constant` (after the warmup) or `wsd`, warmup-stable-decay (Hu et
al. 2024, MiniCPM section 4; Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training
Beyond Fixed Training Durations"): the peak lr until the last `decay_fraction` of the steps,
then a linear or 1-sqrt decay to `min_lr`. Hägele et al. find WSD with a 20 % 1-sqrt cooldown
matches or beats cosine, and the stable phase needs no horizon fixed in advance.

`--optimizer muon` puts the hidden matrices under Muon (train/muon.py); every group's lr is
the schedule's value times the group's `lr_scale` (1 unless set), so one curve drives both.
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from .options import SCHEDULES  # the names schedule() answers to (options.py checks them without torch)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: matrices (decayed) and vectors (not); tied parameters appear once."""
    return decay_groups(model.parameters(), weight_decay)  # parameters() deduplicates tied weights


def decay_groups(params, weight_decay: float) -> list[dict]:
    """The trainable `params` as two AdamW groups: matrices (decayed) and vectors (not)."""
    decay, no_decay = [], []
    for p in params:
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float,
                   betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW over `param_groups`: fused on CUDA, foreach (multi-tensor) otherwise."""
    return adamw(param_groups(model, weight_decay), lr, betas, eps)


def adamw(groups: list[dict], lr: float, betas: tuple[float, float], eps: float) -> torch.optim.AdamW:
    """AdamW over parameter groups: fused on CUDA, foreach (multi-tensor) otherwise."""
    fused = groups[0]["params"][0].device.type == "cuda" and _has_fused()
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None, foreach=None if fused else True)


def _has_fused() -> bool:
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


def linear_lr_at(step: int, lr: float, warmup: int, total: int, min_lr: float = 0.0) -> float:
    """Learning rate of update `step` (1-based): linear warmup to `lr` at `warmup`, then a linear
    decay towards `min_lr` (BERT, appendix A.3, with min_lr 0) whose last update, at `total`, is
    min_lr + (lr - min_lr) / (total - warmup)."""
    if warmup > 0 and step <= warmup:
        return lr * step / warmup
    decay = max(0.0, (total - step + 1) / max(1, total - warmup))
    return min_lr + (lr - min_lr) * min(1.0, decay)


def wsd_lr_at(step: int, lr: float, min_lr: float, warmup: int, total: int, decay_steps: int,
              shape: str = "linear") -> float:
    """Warmup-stable-decay: linear warmup, `lr` until `total - decay_steps`, then `shape`
    (linear, or 1-sqrt: min_lr + (lr - min_lr)(1 - sqrt(progress))) down to `min_lr` at `total`."""
    if warmup > 0 and step <= warmup:
        return lr * step / warmup
    start = total - decay_steps
    if step <= start:
        return lr
    progress = min(1.0, (step - start) / max(1, decay_steps))
    factor = 1.0 - (math.sqrt(progress) if shape == "1-sqrt" else progress)
    return min_lr + (lr - min_lr) * factor


def schedule(name: str, lr: float, warmup: int, total: int, min_lr: float = 0.0,
             decay_fraction: float = 0.2, decay_shape: str = "linear"):
    """step -> learning rate: `cosine` (to min_lr, pretraining), `linear` (to min_lr; 0 for
    fine-tuning), `wsd` (decay over the last decay_fraction of `total`) or `constant`."""
    if name == "cosine":
        return lambda step: lr_at(step, lr, min_lr, warmup, total)
    if name == "linear":
        return lambda step: linear_lr_at(step, lr, warmup, total, min_lr)
    if name == "wsd":
        decay_steps = max(1, round(decay_fraction * total))
        return lambda step: wsd_lr_at(step, lr, min_lr, warmup, total, decay_steps, decay_shape)
    if name == "constant":
        return lambda step: lr * step / warmup if warmup > 0 and step <= warmup else lr
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group to `lr`, times the group's `lr_scale` (Muon's groups: muon_lr / lr)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"] if "lr_scale" in group else lr


def recorded_lrs(optimizer, lr: float) -> dict[str, float]:
    """The learning rates a metrics record holds: `lr` (the schedule's value, AdamW's), and
    `muon_lr` when Muon's groups (the only ones with an `lr_scale`) run at their own."""
    muon = [group["lr"] for group in optimizer.param_groups if "lr_scale" in group]
    return {"lr": lr, **({"muon_lr": muon[0]} if muon else {})}
