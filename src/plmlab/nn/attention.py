"""Multi-head attention for every family: MHA, GQA and MQA, self or cross, with a KV cache.

One module covers the three skeletons; what differs is the mask (built in `masks.py`),
rotary or relative positions, and whether keys/values come from the encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config


class KVCache:
    """Preallocated keys and values for every layer: (B, n_kv_heads, max_len, head_dim).

    `length` tokens are stored; a forward pass writes its new keys at [length, length + T)
    in each layer and the model calls `advance(T)` once afterwards. Cross-attention keys and
    values of an encoder-decoder are computed once and kept in `cross`.

    Sliding-window layers (`window`, from layer `window_from` on; Mistral 7B section 2's
    rolling buffer) keep only their last `window - 1` keys: (B, n_kv, <= window - 1, head_dim).
    A new query sees those plus the pass's own keys, all a window allows, so memory stays
    bounded however long the generation runs; `Stack` slices the mask to match (`kept`).

    Static mode (`make_static`, for a compiled decode step): no shape ever changes. A pass
    writes its keys at the slots of the (T,) tensor `slot` and attends over the whole buffer,
    (B, KV, max_len, hd); the caller's explicit mask hides the slots not yet written. `length`
    then stays max_len - 1, so a one-token pass sees max_len keys, and `advance` does nothing:
    the caller keeps the count (in `slot`), and no Python integer changes from step to step
    (each new integer would make torch.compile compile again).
    """

    def __init__(self, n_layers: int, batch: int, n_kv: int, max_len: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str,
                 window: int | None = None, window_from: int = 0) -> None:
        shape = (batch, n_kv, max_len, head_dim)
        self.window, self.window_from = window, window_from
        self.k = [torch.zeros(self._shape(i, shape), dtype=dtype, device=device) for i in range(n_layers)]
        self.v = [torch.zeros(self._shape(i, shape), dtype=dtype, device=device) for i in range(n_layers)]
        self.cross: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layers
        self.length = 0
        self.max_len = max_len
        self.slot: torch.Tensor | None = None  # static mode: (T,) slots the next pass writes

    def make_static(self, slot: torch.Tensor) -> None:
        if self.window is not None:
            raise ValueError("a sliding-window cache cannot be static")
        self.slot, self.length = slot, self.max_len - 1

    def windowed(self, layer: int) -> bool:
        return self.window is not None and layer >= self.window_from

    def _shape(self, layer: int, full: tuple) -> tuple:
        return (*full[:2], 0, full[3]) if self.windowed(layer) else full  # windows grow as they fill

    def kept(self) -> int:
        """How many past positions a windowed layer still holds: the first length - kept are gone."""
        return min(self.length, self.window - 1) if self.window is not None else self.length

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.windowed(layer):
            return self._roll(layer, k, v)
        if self.slot is not None:  # in place at fixed shapes: (B, KV, max_len, hd) out
            self.k[layer].index_copy_(2, self.slot, k)
            self.v[layer].index_copy_(2, self.slot, v)
            return self.k[layer], self.v[layer]
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: {end} > {self.max_len} positions")
        self.k[layer][:, :, self.length:end] = k
        self.v[layer][:, :, self.length:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def _roll(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = torch.cat([self.k[layer], k], dim=2)  # (B, KV, kept + T, hd)
        v = torch.cat([self.v[layer], v], dim=2)
        keep = min(k.shape[2], self.window - 1)
        self.k[layer], self.v[layer] = k[:, :, k.shape[2] - keep:], v[:, :, v.shape[2] - keep:]
        return k, v

    def advance(self, n: int) -> None:
        if self.slot is None:
            self.length += n

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows (beam search keeps the beams it continues)."""
        self.k = [k.index_select(0, index) for k in self.k]
        self.v = [v.index_select(0, index) for v in self.v]
        self.cross = [None if c is None else (c[0].index_select(0, index), c[1].index_select(0, index))
                      for c in self.cross]


class SelfAttention(nn.Module):
    """Fused QKV projection -> (rotary) -> SDPA -> output projection."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = config.n_heads, config.kv_heads, config.dim_head
        self.qkv = nn.Linear(config.d_model, (self.n_heads + 2 * self.n_kv) * self.head_dim, bias=config.qkv_bias)
        self.o = nn.Linear(self.n_heads * self.head_dim, config.d_model, bias=config.out_bias)
        self.scale = config.attn_scale  # None: SDPA's default 1/sqrt(head_dim)
        self.dropout = config.attn_dropout

    def forward(self, x: torch.Tensor, ctx: "AttentionContext", layer: int) -> torch.Tensor:
        B, T, _ = x.shape
        H, KV = self.n_heads, self.n_kv
        # the fused output is [q heads | k heads | v heads]: one view splits all three
        qkv = self.qkv(x).view(B, T, H + 2 * KV, self.head_dim).transpose(1, 2)  # (B, H + 2KV, T, hd)
        qk, v = qkv[:, :H + KV], qkv[:, H + KV:]  # (B, H + KV, T, hd), (B, KV, T, hd)
        if ctx.rotary is not None:  # queries and keys rotate by the same angles: one pass for both
            qk = ctx.rotary.rotate(qk, *ctx.rope)
        q, k = qk[:, :H], qk[:, H:]  # (B, H, T, hd), (B, KV, T, hd)
        if ctx.cache is not None:
            k, v = ctx.cache.update(layer, k, v)  # (B, KV, past + T, hd); a window: (B, KV, kept + T, hd)
        mask, is_causal = ctx.mask_for(layer)
        y = attend(q, k, v, mask, is_causal, self.scale, self.dropout if self.training else 0.0)
        return self.o(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))

    def value_weight(self) -> torch.Tensor:
        """The value projection's rows of the fused QKV weight, a view: (n_kv * head_dim, d)."""
        return self.qkv.weight[(self.n_heads + self.n_kv) * self.head_dim:]


class CrossAttention(nn.Module):
    """Decoder queries attend to encoder states (T5); their keys/values are cached once."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.n_heads, self.head_dim = config.n_heads, config.dim_head
        inner = self.n_heads * self.head_dim
        self.q = nn.Linear(config.d_model, inner, bias=config.qkv_bias)
        self.kv = nn.Linear(config.d_model, 2 * inner, bias=config.qkv_bias)
        self.o = nn.Linear(inner, config.d_model, bias=config.out_bias)
        self.scale = config.attn_scale
        self.dropout = config.attn_dropout

    def forward(self, x: torch.Tensor, ctx: "AttentionContext", layer: int) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        cached = ctx.cache.cross[layer] if ctx.cache is not None else None
        if cached is None:
            mem = ctx.memory  # (B, S, d) encoder output
            k, v = self.kv(mem).view(B, mem.shape[1], 2 * self.n_heads, self.head_dim).transpose(1, 2).chunk(2, dim=1)
            if ctx.cache is not None:
                ctx.cache.cross[layer] = (k, v)
        else:
            k, v = cached
        y = attend(q, k, v, ctx.memory_mask, False, self.scale, self.dropout if self.training else 0.0)
        return self.o(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))

    def value_weight(self) -> torch.Tensor:
        """The value rows of the fused KV weight (the second half of its heads), a view: (inner, d)."""
        return self.kv.weight[self.n_heads * self.head_dim:]


def attend(q, k, v, mask, is_causal, scale, dropout) -> torch.Tensor:
    """SDPA with grouped KV heads. `mask`: bool (True = attend) or additive float, or None."""
    gqa = {}
    if k.shape[1] != q.shape[1]:  # GQA / MQA: share each KV head across a group of queries
        if _SDPA_GQA:  # the kernel indexes the shared heads itself: no copies of K and V
            gqa = {"enable_gqa": True}
        else:
            repeat = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal and mask is None, scale=scale, **gqa
    )


_SDPA_GQA = "enable_gqa" in (F.scaled_dot_product_attention.__doc__ or "")  # torch >= 2.5


class AttentionContext:
    """What every layer of a stack needs besides its input: built once per forward pass."""

    def __init__(self, mask=None, is_causal=False, rotary=None, rope=None, cache=None,
                 memory=None, memory_mask=None) -> None:
        self.mask = mask  # (B or 1, 1 or H, Tq, Tk) bool / additive float, or None
        self.is_causal = is_causal  # SDPA fast path when no explicit mask is needed
        # sliding-window layers (from layer window_from on) use window_mask instead, when the
        # window hides a key: (B or 1, 1, Tq, kept + Tq) bool
        self.window_mask: torch.Tensor | None = None
        self.window_from = 0
        self.rotary = rotary  # the stack's Rotary module (None without rotary positions)
        self.rope = rope  # (cos, sin) for this pass's positions
        self.cache = cache  # KVCache or None
        self.memory = memory  # encoder output for cross-attention
        self.memory_mask = memory_mask  # (B, 1, 1, S) mask over encoder positions

    def mask_for(self, layer: int) -> tuple[torch.Tensor | None, bool]:
        """(mask, is_causal) for `layer`: its window's mask from `window_from` on (Mistral, Qwen2)."""
        if self.window_mask is not None and layer >= self.window_from:
            return self.window_mask, False
        return self.mask, self.is_causal


def window_mask(full: torch.Tensor, window: int, kept: int) -> torch.Tensor:
    r"""Sliding-window attention's mask from the full one, (B or 1, 1, Tq, past + Tq) bool:
    a query at position q sees keys k with q - k < window (transformers' sliding_window_overlay),
    then only the columns a windowed cache still holds (its last `kept` past keys + the new ones).

        window 3, past 0, T 5      q\k 0 1 2 3 4
                                    0   x . . . .
                                    1   x x . . .
                                    2   x x x . .
                                    3   . x x x .
                                    4   . . x x x
    """
    Tq, Tk = full.shape[-2:]
    query = torch.arange(Tk - Tq, Tk, device=full.device)[:, None]  # (Tq, 1) absolute positions
    key = torch.arange(Tk, device=full.device)[None, :]  # (1, Tk)
    keep = full & (query - key < window)  # (B or 1, 1, Tq, Tk)
    keep = keep | ~keep.any(dim=-1, keepdim=True)  # padding queries: see all rather than NaN
    return keep[..., Tk - Tq - kept:]  # (B or 1, 1, Tq, kept + Tq)
