"""Position information: learned / sinusoidal tables, rotary embeddings, T5 relative buckets.

Absolute tables are added to the token embeddings (see `embedding.py`); rotary embeddings
rotate queries and keys inside attention; T5's relative bias is added to attention scores.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import Config


# --- absolute ------------------------------------------------------------------------------
class LearnedPositions(nn.Module):
    """A learned table (BERT, GPT-1/2); RoBERTa's ids start at `position_offset`."""

    def __init__(self, config: Config, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(config.max_positions + config.position_offset, dim))

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, dim)
        return self.weight[position_ids]


class SinusoidalPositions(nn.Module):
    """Fixed sin/cos table of "Attention is all you need" (section 3.5); no parameters.

    Interleaved: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)),
    as the paper and DistilBERT's `create_sinusoidal_embeddings` write it (tensor2tensor's
    timing signal instead concatenates [sin | cos]). The angles are computed in float64, as
    DistilBERT's numpy does: in float32, pos * freq already loses 1e-4 by position 2048.
    """

    def __init__(self, config: Config, dim: int) -> None:
        super().__init__()
        pos = torch.arange(config.max_positions + config.position_offset, dtype=torch.float64)[:, None]
        freq = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (ceil(dim / 2),)
        angle = pos * freq  # (P, ceil(dim / 2))
        table = torch.zeros(len(pos), dim, dtype=torch.float64)
        table[:, 0::2] = torch.sin(angle)
        table[:, 1::2] = torch.cos(angle)[:, : dim // 2]
        self.register_buffer("table", table.float(), persistent=False)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return self.table[position_ids]


class Learned2DPositions(nn.Module):
    """GLM's two learned tables (Du et al. 2022, section 2.2.2).

    position_ids is (B, 2, T): row 0 = position in Part A (a span's tokens reuse the position
    of its [MASK]), row 1 = 0 in Part A and 1..len inside each Part B span. Both embeddings
    are added to the token embedding.
    """

    def __init__(self, config: Config, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(config.max_positions, dim))
        self.block_weight = nn.Parameter(torch.zeros(config.max_positions, dim))

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        if position_ids.dim() == 2:  # plain 1-D positions: block positions are all zero
            return self.weight[position_ids] + self.block_weight[0]
        return self.weight[position_ids[:, 0]] + self.block_weight[position_ids[:, 1]]


ABSOLUTE_POSITIONS = {
    "learned": LearnedPositions,
    "sinusoidal": SinusoidalPositions,
    "learned-2d": Learned2DPositions,
}


# --- rotary ----------------------------------------------------------------------------------
def rope_inv_freq(config: Config) -> torch.Tensor:
    """Inverse frequencies theta^(-2i/d) for the rotated dims, with LLaMA-3.1 scaling if set."""
    dim = config.rotary_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    scaling = config.rope_scaling or {}
    if scaling.get("rope_type", scaling.get("type")) == "llama3":
        inv_freq = _llama3_scale(inv_freq, scaling)
    return inv_freq


def _llama3_scale(inv_freq: torch.Tensor, s: dict) -> torch.Tensor:
    """LLaMA-3.1: keep high frequencies, divide low ones by `factor`, blend in between."""
    factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
    old_ctx = s["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_ctx / low, inv_freq / factor, inv_freq)
    smooth = (old_ctx / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_ctx / high) & (wavelen <= old_ctx / low)
    return torch.where(medium, blended, scaled)


class Rotary(nn.Module):
    """Rotary position embedding (Su et al. 2021) in two layouts.

    rotate-half (HF LLaMA, ChatGLM's q/k after HF conversion): dims i and i + d/2 form a pair.
    interleaved (GLM-4, ChatGLM2/3): dims 2i and 2i+1 form a pair.
    Only the first `rotary_dim` dims of each head rotate (partial rotary); the rest pass.
    """

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.rotary_dim = config.rotary_dim
        self.interleaved = config.rotary_interleaved
        self.register_buffer("inv_freq", rope_inv_freq(config), persistent=False)

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) positions -> cos, sin of shape (B, 1, T, rotary_dim) in fp32.

        GLM's (B, 2, T) positions rotate by their first row (GLM-130B style 1-D rotary)."""
        if position_ids.dim() == 3:
            position_ids = position_ids[:, 0]
        freqs = position_ids[:, :, None].float() * self.inv_freq[None, None, :]  # (B, T, d/2)
        if self.interleaved:
            emb = freqs.repeat_interleave(2, dim=-1)  # f0 f0 f1 f1 ...
        else:
            emb = torch.cat((freqs, freqs), dim=-1)  # f0 f1 ... f0 f1 ...
        return emb.cos()[:, None], emb.sin()[:, None]

    def rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate (B, H, T, head_dim) queries or keys."""
        d = self.rotary_dim
        x_rot, x_pass = x[..., :d], x[..., d:]
        if self.interleaved:
            x1, x2 = x_rot[..., 0::2], x_rot[..., 1::2]
            rotated = torch.stack((-x2, x1), dim=-1).flatten(-2)
        else:
            x1, x2 = x_rot.chunk(2, dim=-1)
            rotated = torch.cat((-x2, x1), dim=-1)
        out = _mix(x_rot, rotated, cos, sin)
        return torch.cat((out, x_pass), dim=-1) if x_pass.shape[-1] else out


class Rotary2D(nn.Module):
    """ChatGLM-6B's 2-D rotary embedding (GLM's 2-D positions, section 2.2.2, made rotary).

    Each head splits in two halves: the first rotates by the position (row 0), the second by
    the block position (row 1), each in the rotate-half layout over head_dim / 2 dims with
    its own frequencies theta^(-2i / (head_dim / 2)) (modeling_chatglm.py, position_encoding_2d).
    """

    def __init__(self, config: Config) -> None:
        super().__init__()
        half = config.dim_head // 2
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, half, 2, dtype=torch.float32) / half))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 2, T) or (B, T) (block positions 0) -> cos, sin (B, 1, T, head_dim) in fp32."""
        if position_ids.dim() == 2:
            position_ids = torch.stack((position_ids, torch.zeros_like(position_ids)), dim=1)
        freqs = position_ids[..., None].float() * self.inv_freq  # (B, 2, T, d/4)
        emb = torch.cat((freqs, freqs), dim=-1)  # rotate-half layout within each half
        emb = torch.cat((emb[:, 0], emb[:, 1]), dim=-1)  # (B, T, head_dim): [position | block]
        return emb.cos()[:, None], emb.sin()[:, None]

    def rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate (B, H, T, head_dim): each half by rotate-half on its own."""
        quarters = x.chunk(4, dim=-1)  # (a1, a2) is the position half, (b1, b2) the block half
        rotated = torch.cat((-quarters[1], quarters[0], -quarters[3], quarters[2]), dim=-1)
        return _mix(x, rotated, cos, sin)


def _mix(x: torch.Tensor, rotated: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotated * sin in fp32, cast back to x's dtype; fp32 inputs skip the casts (the
    same values, six dispatched no-op casts fewer per layer of a decoded token)."""
    if x.dtype == torch.float32:
        return x * cos + rotated * sin
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


ROTARY = {"rotary": Rotary, "rotary-2d": Rotary2D}


# --- T5 relative position bias ----------------------------------------------------------------
def relative_position_bucket(
    relative_position: torch.Tensor, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128
) -> torch.Tensor:
    """Map key - query distances to T5's buckets (Raffel et al. 2020, section 2.1).

    Bidirectional: half the buckets for each sign. Within a half, distances below half of it
    map exactly; larger ones are log-spaced up to `max_distance`, then clipped.
    """
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = -torch.clamp(relative_position, max=0)  # causal: only the past counts
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    log_ratio = torch.log(distance.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).long()
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


class RelativePositionBias(nn.Module):
    """T5's learned per-head bias over buckets; computed once per stack and shared by layers."""

    def __init__(self, config: Config, bidirectional: bool) -> None:
        super().__init__()
        self.bidirectional = bidirectional
        self.num_buckets = config.relative_buckets
        self.max_distance = config.relative_max_distance
        self.bias = nn.Embedding(config.relative_buckets, config.n_heads)

    def forward(self, q_len: int, k_len: int, offset: int = 0) -> torch.Tensor:
        """Bias (1, H, q_len, k_len) for queries at offset..offset+q_len-1."""
        device = self.bias.weight.device
        query = torch.arange(offset, offset + q_len, device=device)[:, None]
        key = torch.arange(k_len, device=device)[None, :]
        buckets = relative_position_bucket(key - query, self.bidirectional, self.num_buckets, self.max_distance)
        return self.bias(buckets).permute(2, 0, 1)[None]  # (1, H, q, k)
