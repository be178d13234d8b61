"""A stack of blocks plus the positions that act inside attention (rotary, T5 relative bias)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import Config
from ..masks import additive, build_mask, causal_mask
from ..nn.attention import AttentionContext, KVCache, window_mask
from ..nn.block import Block
from ..nn.mlp import make_dropout
from ..nn.norm import make_norm
from ..nn.position import ROTARY, RelativePositionBias


class Stack(nn.Module):
    """`n_layers` blocks (or one block applied n_layers times: ALBERT) and a final norm."""

    def __init__(self, config: Config, n_layers: int, causal: bool, cross_attention: bool = False) -> None:
        super().__init__()
        self.n_layers, self.causal = n_layers, causal
        self.window, self.window_from = config.sliding_window, config.full_attention_layers
        n_modules = 1 if config.shared_layers else n_layers
        self.layers = nn.ModuleList(Block(config, cross_attention) for _ in range(n_modules))
        if config.position in ROTARY:  # rotary (1-D) or rotary-2d (ChatGLM-6B)
            self.rotary = ROTARY[config.position](config)
        if config.position == "relative":
            self.relative = RelativePositionBias(config, bidirectional=not causal)
        if config.final_norm:
            self.norm = make_norm(config)
        self.drop = make_dropout(config.dropout)
        self.gradient_checkpointing = False

    def forward(
        self,
        x: torch.Tensor,  # (B, T, d)
        position_ids: torch.Tensor | None = None,  # (B, T), or (B, 2, T) for GLM's 2-D positions
        attention_mask: torch.Tensor | None = None,  # (B, past + T) padding or (B, T, past + T) explicit
        cache: KVCache | None = None,
        memory: torch.Tensor | None = None,  # (B, S, d) encoder output for cross-attention
        memory_mask: torch.Tensor | None = None,  # (B, S) encoder padding
    ) -> torch.Tensor:
        ctx = self._context(x, position_ids, attention_mask, cache, memory, memory_mask)
        for i in range(self.n_layers):
            layer = self.layers[0 if len(self.layers) == 1 else i]
            if self.gradient_checkpointing and self.training:
                x = checkpoint(layer, x, ctx, i, use_reentrant=False)
            else:
                x = layer(x, ctx, i)
        if cache is not None:
            cache.advance(x.shape[1])
        if hasattr(self, "norm"):
            x = self.norm(x)
        return self.drop(x)

    def _context(self, x, position_ids, attention_mask, cache, memory, memory_mask) -> AttentionContext:
        B, T, _ = x.shape
        past = cache.length if cache is not None else 0
        explicit = attention_mask if attention_mask is not None and attention_mask.dim() == 3 else None
        padding = attention_mask if attention_mask is not None and attention_mask.dim() == 2 else None
        mask, is_causal = build_mask(T, past + T, self.causal, padding, explicit, x.device)
        ctx = AttentionContext(mask=mask, is_causal=is_causal, cache=cache)
        if self.window is not None and past + T > self.window:  # only then does the window hide a key
            full = mask if mask is not None else causal_mask(T, past + T, x.device)  # (B or 1, 1, T, past + T)
            kept = cache.kept() if cache is not None else 0
            ctx.window_mask, ctx.window_from = window_mask(full, self.window, kept), self.window_from
        if hasattr(self, "rotary"):
            if position_ids is None:
                position_ids = torch.arange(past, past + T, device=x.device)[None].expand(B, T)
            ctx.rotary, ctx.rope = self.rotary, self.rotary(position_ids)
        if hasattr(self, "relative"):
            # T5: one bias for the whole stack, the mask folded into it as -inf-like values.
            bias = self.relative(T, past + T, offset=past)  # (1, H, T, past + T)
            if is_causal:  # the fused causal path cannot add a bias: spell the mask out
                mask = causal_mask(T, past + T, x.device)
            ctx.mask, ctx.is_causal = additive(mask, bias, x.dtype), False
        if memory is not None:
            ctx.memory = memory
            if memory_mask is not None and not bool(memory_mask.all()):
                ctx.memory_mask = memory_mask.bool()[:, None, None, :]
        return ctx

