"""Decoder-only skeleton: GPT-1/2/3, LLaMA, GLM (GLM passes its own 2-D mask and positions)."""

from __future__ import annotations

import torch

from ..config import Config
from ..nn.attention import KVCache
from ..nn.embedding import Embeddings
from .base import ModelOutput, PretrainedModel
from .heads import make_head
from .stack import Stack


class DecoderModel(PretrainedModel):
    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.embed = Embeddings(config)
        self.decoder = Stack(config, config.n_layers, causal=True)
        self.head = make_head(config)
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor | None = None,  # (B, past + T) padding, or (B, T, past + T)
        position_ids: torch.Tensor | None = None,  # (B, T), or (B, 2, T) for GLM
        labels: torch.Tensor | None = None,  # (B, T), aligned with the logits (already shifted)
        cache: KVCache | None = None,
        token_type_ids: torch.Tensor | None = None,
        language_ids: torch.Tensor | None = None,  # (B, T) XLM language of each token
        last_only: bool = False,  # decoding: logits of the last position only, (B, 1, V)
    ) -> ModelOutput:
        B, T = input_ids.shape
        if position_ids is None:
            past = cache.length if cache is not None else 0
            position_ids = torch.arange(past, past + T, device=input_ids.device)[None].expand(B, T)
        offset = self.config.position_offset  # RoBERTa-style tables start at an offset; most at 0
        x = self.embed(input_ids, position_ids + offset if offset else position_ids, token_type_ids, language_ids)
        # 2-D (GLM) positions feed the embedding; a rotary stack uses the first row, a
        # rotary-2d stack (ChatGLM-6B) both.
        h = self.decoder(x, position_ids, attention_mask, cache)
        out = ModelOutput(last_hidden_state=h, cache=cache)
        if self.head is not None:
            # Decoding needs the next token's scores only: the head (V x d, the largest matrix
            # of a small model) then runs on one position instead of T.
            out.logits = self.head(h[:, -1:] if last_only and labels is None else h)  # (B, T or 1, V)
            if labels is not None:
                out.loss = self.lm_loss(out.logits, labels)
        return out
