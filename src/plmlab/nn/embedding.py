"""Input embeddings: tokens (+ absolute positions) (+ token types) (+ ERNIE task types) (-> norm) (-> E->H projection)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import Config
from .norm import make_norm
from .position import ABSOLUTE_POSITIONS


class Embeddings(nn.Module):
    """Sum of the token, absolute position and token-type embeddings at width E.

    ALBERT factorises the vocabulary embedding (Lan et al. 2020, section 3.1): everything here
    lives at the small width E, and `proj` maps E -> d_model afterwards.
    """

    def __init__(self, config: Config) -> None:
        super().__init__()
        dim = config.embed_dim
        self.tokens = nn.Embedding(config.vocab_size, dim)
        if config.position in ABSOLUTE_POSITIONS:
            self.positions = ABSOLUTE_POSITIONS[config.position](config, dim)
        if config.type_vocab_size:
            self.token_types = nn.Embedding(config.type_vocab_size, dim)
        if config.task_type_vocab_size:  # ERNIE's task-type embedding (use_task_id)
            self.task_types = nn.Embedding(config.task_type_vocab_size, dim)
        if config.embedding_norm:
            self.norm = make_norm(config, dim)
        if dim != config.d_model:
            self.proj = nn.Linear(dim, config.d_model)
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        task_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.tokens(input_ids)  # (B, T, E)
        if hasattr(self, "positions"):
            x = x + self.positions(position_ids)
        if hasattr(self, "token_types"):
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_types(token_type_ids)
        if hasattr(self, "task_types"):  # ERNIE: task id 0 when none is given, as transformers
            x = x + self.task_types(torch.zeros_like(input_ids) if task_type_ids is None else task_type_ids)
        if hasattr(self, "norm"):
            x = self.norm(x)
        x = self.drop(x)
        if hasattr(self, "proj"):
            x = self.proj(x)  # (B, T, d_model)
        return x
