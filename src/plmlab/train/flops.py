"""FLOP accounting for the MFU (model FLOPs utilisation) estimate in metrics.jsonl.

MFU = achieved model FLOP/s / peak FLOP/s of the devices (PaLM, appendix B). CPU runs have no
peak in the table and log no MFU unless `--peak-flops` gives one.
"""

from __future__ import annotations

import torch

from ..families import family_of

# Dense peak FLOP/s per GPU for bf16/fp16 tensor-core math (fp32 runs use TF32 peaks).
PEAK_FLOPS = {  # substring of torch.cuda.get_device_name() -> (bf16/fp16, tf32)
    "H200": (989e12, 494.7e12), "H100": (989e12, 494.7e12), "GH200": (989e12, 494.7e12),
    "A100": (312e12, 156e12), "A10G": (70e12, 35e12), "L40S": (362e12, 183e12), "L4": (121e12, 60e12),
    "V100": (125e12, 15.7e12), "T4": (65e12, 8.1e12), "RTX 4090": (165e12, 82.6e12), "RTX 3090": (71e12, 35.6e12),
}


def default_peak_flops(device: torch.device, mixed: bool) -> float | None:
    """The table's peak for this GPU (bf16/fp16 when `mixed`, TF32 otherwise); None on CPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_FLOPS, key=len, reverse=True):
        if key in name:
            bf16, tf32 = PEAK_FLOPS[key]
            return bf16 if mixed else tf32
    return None


def flops_per_token(n_params: int, n_layers: int, d_model: int, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the matmuls (forward + backward) plus the attention
    scores and mixing, 12 * layers * d_model * seq_len (PaLM, appendix B)."""
    return 6.0 * n_params + 12.0 * n_layers * d_model * seq_len


def model_flops_per_token(config, n_params: int, seq_len: int) -> float:
    """`flops_per_token` of a Config (an encoder-decoder counts both stacks' layers)."""
    return flops_per_token(n_params, family_of(config).depth(config), config.d_model, seq_len)


class MFU:
    """tokens/s over all ranks -> the share of the devices' peak (None without a known peak)."""

    def __init__(self, flops_per_token: float | None, peak_flops: float | None, world: int = 1) -> None:
        self.flops_per_token, self.peak_flops, self.world = flops_per_token, peak_flops, world

    def __call__(self, tokens_per_s: float) -> float | None:
        if not self.peak_flops or not self.flops_per_token:
            return None
        return self.flops_per_token * tokens_per_s / (self.peak_flops * self.world)
