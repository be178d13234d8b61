"""Encoder-decoder skeleton (T5, BART): the encoder stack plus a causal stack with cross-attention.

  T5    one Embeddings (tokens only) feeds both stacks; positions are relative, inside attention
  BART  the token table is shared; each stack adds its own learned positions (ids + 2) and
        embedding norm: `embed` feeds the encoder, `decoder_embed` (no token table) the decoder
"""

from __future__ import annotations

import torch

from ..config import Config
from ..errors import PlmlabError
from ..nn.attention import KVCache
from ..nn.embedding import Embeddings
from ..masks import IGNORE_INDEX
from .base import ModelOutput, PretrainedModel
from .heads import make_head
from .stack import Stack


class EncoderDecoderModel(PretrainedModel):
    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.embed = Embeddings(config)  # the token table of both stacks (T5's / BART's `shared`)
        if config.per_stack_embeddings:  # BART: the decoder's own positions and embedding norm
            self.decoder_embed = Embeddings(config, own_tokens=False)
        self.encoder = Stack(config, config.n_layers, causal=False)
        self.decoder = Stack(config, config.decoder_layers, causal=True, cross_attention=True)
        self.head = make_head(config)
        self.init_weights()

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T = input_ids.shape
        self._check_length(T, "input")
        positions = torch.arange(T, device=input_ids.device)[None].expand(B, T)
        x = self.embed(input_ids, positions + self.config.position_offset)  # (B, T, d)
        return self.encoder(x, positions, attention_mask)

    def decode(
        self,
        decoder_input_ids: torch.Tensor,  # (B, T)
        memory: torch.Tensor,  # (B, S, d) encoder output
        memory_mask: torch.Tensor | None = None,  # (B, S)
        decoder_attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        B, T = decoder_input_ids.shape
        past = cache.length if cache is not None else 0
        self._check_length(past + T, "decoder input")
        positions = torch.arange(past, past + T, device=decoder_input_ids.device)[None].expand(B, T)
        table_rows = positions + self.config.position_offset  # BART's learned positions start at row 2
        if hasattr(self, "decoder_embed"):
            x = self.decoder_embed(decoder_input_ids, table_rows, tokens=self.embed.tokens)  # (B, T, d)
        else:
            x = self.embed(decoder_input_ids, table_rows)
        return self.decoder(x, positions, decoder_attention_mask, cache, memory, memory_mask)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,  # (B, T_dec) target ids, -100 = no loss
        cache: KVCache | None = None,
        encoder_last_hidden_state: torch.Tensor | None = None,
    ) -> ModelOutput:
        memory = encoder_last_hidden_state
        if memory is None:
            memory = self.encode(input_ids, attention_mask)
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("pass decoder_input_ids or labels")
            decoder_input_ids = self.shift_right(labels)
        h = self.decode(decoder_input_ids, memory, attention_mask, decoder_attention_mask, cache)
        out = ModelOutput(last_hidden_state=h, encoder_last_hidden_state=memory, cache=cache)
        if self.head is not None:
            out.logits = self.head(h)
            if labels is not None:
                out.loss = self.lm_loss(out.logits, labels)
        return out

    def _check_length(self, length: int, what: str) -> None:
        """A learned position table has max_positions rows: longer inputs are one clear line."""
        if hasattr(self.embed, "positions") and length > self.config.max_positions:
            raise PlmlabError(f"{what} of {length} tokens is longer than the model's "
                              f"{self.config.max_positions} positions (truncate it)")

    def shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: the decoder sees [start] + targets[:-1] (T5 starts from pad = 0,
        BART from eos = 2)."""
        shifted = labels.new_full(labels.shape, self.config.decoder_start())
        shifted[:, 1:] = labels[:, :-1]
        return shifted.masked_fill(shifted == IGNORE_INDEX, self.config.pad_token_id or 0)
