"""Input embeddings: tokens (+ absolute positions) (+ token types) (+ ERNIE task types)
(+ XLM languages) (-> norm) (-> E->H projection)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import Config
from ..errors import PlmlabError
from .mlp import make_dropout
from .norm import make_norm
from .position import ABSOLUTE_POSITIONS


class Embeddings(nn.Module):
    """Sum of the token, absolute position and token-type embeddings at width E.

    ALBERT factorises the vocabulary embedding (Lan et al. 2020, section 3.1): everything here
    lives at the small width E, and `proj` maps E -> d_model afterwards.
    """

    def __init__(self, config: Config, own_tokens: bool = True) -> None:
        super().__init__()
        dim = config.embed_dim
        if own_tokens:  # False: BART's decoder side, which looks tokens up in the encoder's table
            self.tokens = nn.Embedding(config.vocab_size, dim)
        # BART's scale_embedding (Vaswani et al. 2017, section 3.4): tokens times sqrt(d_model)
        self.token_scale = math.sqrt(config.d_model) if config.scale_embedding else None
        if config.position in ABSOLUTE_POSITIONS:
            self.positions = ABSOLUTE_POSITIONS[config.position](config, dim)
        if config.type_vocab_size:
            self.token_types = nn.Embedding(config.type_vocab_size, dim)
        if config.task_type_vocab_size:  # ERNIE's task-type embedding (use_task_id)
            self.task_types = nn.Embedding(config.task_type_vocab_size, dim)
        # --- languages (XLM) ---
        if config.n_languages:
            self.languages = nn.Embedding(config.n_languages, dim)
        if config.embedding_norm:
            self.norm = make_norm(config, dim)
        if dim != config.d_model:
            self.proj = nn.Linear(dim, config.d_model)
        self.drop = make_dropout(config.dropout)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        language_ids: torch.Tensor | None = None,  # (B, T) XLM; None = no language vector (as HF)
        tokens: nn.Embedding | None = None,  # a shared table to look tokens up in (BART's decoder)
        task_type_ids: torch.Tensor | None = None,  # (B, T) ERNIE
    ) -> torch.Tensor:
        x = (self.tokens if tokens is None else tokens)(input_ids)  # (B, T, E)
        if self.token_scale is not None:
            x = x * self.token_scale
        if hasattr(self, "positions"):
            x = x + self.positions(position_ids)
        if hasattr(self, "token_types"):
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_types(token_type_ids)
        if hasattr(self, "task_types"):  # ERNIE: task id 0 when none is given, as transformers
            x = x + self.task_types(torch.zeros_like(input_ids) if task_type_ids is None else task_type_ids)
        if language_ids is not None:
            x = x + self.language_vectors(language_ids)  # (B, T, E)
        if hasattr(self, "norm"):
            x = self.norm(x)
        x = self.drop(x)
        if hasattr(self, "proj"):
            x = self.proj(x)  # (B, T, d_model)
        return x

    def language_vectors(self, language_ids: torch.Tensor) -> torch.Tensor:
        """XLM (Lample & Conneau 2019, figure 1): the language embedding of every token; ids the
        model has no row for are one line, not an index error deep inside torch."""
        if not hasattr(self, "languages"):
            raise PlmlabError("language_ids given, but this model has no language embeddings (n_languages=0)")
        n = self.languages.num_embeddings
        if language_ids.numel() and (int(language_ids.min()) < 0 or int(language_ids.max()) >= n):
            raise PlmlabError(f"language ids must be in [0, {n}) for this model's {n} languages, "
                              f"got {int(language_ids.min())}..{int(language_ids.max())}")
        return self.languages(language_ids)
