"""Output heads: kept apart from the stacks so a checkpoint can carry any of them."""

from __future__ import annotations

import torch
from torch import nn

from ..config import Config
from ..nn.mlp import ACTIVATIONS
from ..nn.norm import make_norm


class LMHead(nn.Module):
    """A linear map to the vocabulary (GPT, LLaMA, T5, GLM), usually tied to the embeddings."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.scale = config.output_scale  # T5 v1.0: d_model ** -0.5 before the tied projection
        self.proj = nn.Linear(config.d_model, config.vocab_size, bias=config.lm_head_bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.scale is not None:
            h = h * self.scale
        return self.proj(h)


class MLMHead(nn.Module):
    """BERT's MLM head: dense -> activation -> norm -> tied decoder + its own bias.

    ALBERT's dense maps d_model -> E so the tied decoder works at the factorised width.
    """

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.d_model, config.embed_dim)
        self.act = ACTIVATIONS[config.activation]
        self.norm = make_norm(config, config.embed_dim)
        self.proj = nn.Linear(config.embed_dim, config.vocab_size, bias=True)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(self.act(self.dense(h))))


# BERT's pooler is tanh (Devlin et al. 2019, A.1); DistilBERT's pre_classifier is followed by ReLU
POOLER_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


class Pooler(nn.Module):
    """act(dense(h[:, 0])): the sentence representation for NSP / SOP / classification."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.act = POOLER_ACTIVATIONS[config.pooler_activation]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(h[:, 0]))  # (B, d)


HEADS = {"lm": LMHead, "mlm": MLMHead}


def make_head(config: Config) -> nn.Module | None:
    return HEADS[config.head](config) if config.head in HEADS else None
