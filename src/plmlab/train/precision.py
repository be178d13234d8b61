"""Mixed precision for the trainer: the autocast dtype of `--precision` and, for fp16, a GradScaler.

    auto        bf16-mixed on a CUDA device that supports it, fp32 otherwise (CPU)
    fp32        no autocast
    bf16-mixed  (= bf16) bf16 autocast, fp32 weights and optimizer state; no loss scaling
    fp16-mixed  fp16 autocast plus dynamic loss scaling (CUDA only)

Under FSDP2 the same dtype becomes the sharding's `MixedPrecisionPolicy` (train/parallel.py):
parameters are gathered in it, gradients reduced in fp32.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import PlmlabError


class Precision:
    """autocast dtype and (fp16) a GradScaler for the run's --precision."""

    def __init__(self, precision: str, device: torch.device, warn: Callable[[str], None] | None = None) -> None:
        if precision == "auto":
            precision = "bf16-mixed" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
        if precision == "bf16":
            precision = "bf16-mixed"
        self.name = precision
        self.dtype = {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}.get(precision)
        if precision == "fp16-mixed" and device.type != "cuda":
            raise PlmlabError("--precision fp16-mixed needs a CUDA device (on CPU use fp32, or bf16-mixed)")
        if precision == "bf16-mixed" and device.type == "cpu" and warn is not None:
            warn("warning: --precision bf16-mixed on CPU is emulated and can be far slower than fp32")
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16-mixed" else None

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None)

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss if self.scaler is None else self.scaler.scale(loss)

    def unscale(self, optimizer) -> None:
        """Before clipping: the gradients back in true units (fp16)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer, finite: bool) -> None:
        """The optimizer step (skipped when a gradient was not finite); fp16 updates its scale."""
        if finite:
            optimizer.step() if self.scaler is None else self.scaler.step(optimizer)
        if self.scaler is not None:
            self.scaler.update()

    def state(self) -> dict | None:
        """fp16's loss scale (JSON numbers), so a resumed run goes on with the same scale."""
        return None if self.scaler is None else dict(self.scaler.state_dict())

    def load_state(self, state: dict | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
