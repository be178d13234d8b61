"""Encoder-only skeleton: BERT, RoBERTa, ALBERT (bidirectional attention, pooler, MLM head)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..errors import PlmlabError
from ..nn.embedding import Embeddings
from ..masks import IGNORE_INDEX
from .base import ModelOutput, PretrainedModel
from .heads import Pooler, make_head
from .stack import Stack


class EncoderModel(PretrainedModel):
    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.embed = Embeddings(config)
        self.encoder = Stack(config, config.n_layers, causal=False)
        if config.pooler:
            self.pooler = Pooler(config)
        if config.pair_head:  # NSP (BERT) or SOP (ALBERT): label 0 = IsNext / original order
            self.pair_head = nn.Linear(config.d_model, 2)
        self.head = make_head(config)
        if config.classifier != "none":  # fine-tuning head: dropout + linear (BERT section 4)
            drop = config.dropout if config.classifier_dropout is None else config.classifier_dropout
            self.classifier_drop = nn.Dropout(drop)
            self.classifier = nn.Linear(config.d_model, len(config.label_names))
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor | None = None,  # (B, T) 1 = token, 0 = padding
        token_type_ids: torch.Tensor | None = None,  # (B, T) segment A = 0, B = 1
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,  # (B, T) MLM / token-class targets or (B,) classes; -100 = none
        next_sentence_label: torch.Tensor | None = None,  # (B,) NSP / SOP labels
        sentence_order_label: torch.Tensor | None = None,
        language_ids: torch.Tensor | None = None,  # (B, T) XLM language of each token
        task_type_ids: torch.Tensor | None = None,  # (B, T) ERNIE's task ids (task_type_vocab_size > 0)
    ) -> ModelOutput:
        if hasattr(self.embed, "positions") and input_ids.shape[1] > self.config.max_positions:
            raise PlmlabError(f"input of {input_ids.shape[1]} tokens is longer than the model's "
                              f"{self.config.max_positions} positions (truncate it)")
        if position_ids is None:
            position_ids = self.default_positions(input_ids)
        x = self.embed(input_ids, position_ids + self.config.position_offset, token_type_ids,
                       language_ids=language_ids, task_type_ids=task_type_ids)
        h = self.encoder(x, position_ids, attention_mask)
        out = ModelOutput(last_hidden_state=h)
        losses = []
        if self.head is not None:
            out.logits = self.head(h)  # (B, T, V)
            if labels is not None:
                losses.append(self.lm_loss(out.logits, labels))
        if hasattr(self, "pooler"):
            out.pooled = self.pooler(h)  # (B, d)
        pair_label = next_sentence_label if next_sentence_label is not None else sentence_order_label
        if hasattr(self, "pair_head"):
            out.pair_logits = self.pair_head(out.pooled)
            if pair_label is not None:
                losses.append(F.cross_entropy(out.pair_logits.float(), pair_label.view(-1), ignore_index=IGNORE_INDEX))
        if hasattr(self, "classifier"):
            feats = out.pooled if self.config.classifier == "sequence" else h  # (B, d) or (B, T, d)
            out.logits = self.classifier(self.classifier_drop(feats))  # (B, C) or (B, T, C)
            if labels is not None:
                losses.append(self.lm_loss(out.logits, labels))
        if losses:
            out.loss = sum(losses)
        return out

    def default_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """0..T-1; with a position offset (RoBERTa) padding keeps the padding row, as HF does:
        real tokens count from 0 (table row offset), pads get row offset - 1."""
        B, T = input_ids.shape
        if self.config.position_offset and self.config.pad_token_id is not None:
            real = (input_ids != self.config.pad_token_id).long()
            return torch.cumsum(real, dim=1) * real - 1
        return torch.arange(T, device=input_ids.device)[None].expand(B, T)
