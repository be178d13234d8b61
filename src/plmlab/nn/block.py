"""One Transformer block for all three skeletons; norm placement is a choice of residual rule.

  pre       x = x + f(norm(x))                 GPT-2, LLaMA, T5, the GLM repository
  post      x = norm(x + f(x))                 BERT, RoBERTa, ALBERT, GPT-1
  deepnorm  y = norm(x); x = alpha * y + f(y)  GLM-130B / ChatGLM-6B (Wang et al. 2022),
            alpha = sqrt(2 N); written as ChatGLM-6B's code does, which equals post-LN
            DeepNorm with the first norm moved onto the embeddings. Its init half, beta,
            is `deepnorm_beta` below, applied by `PretrainedModel.init_weights`.
  sandwich  x = x + norm2(f(norm1(x)))         GLM-4-0414 (CogView's Sandwich-LN): the pre rule,
            with each sublayer's output normed before the add (`*_post_norm` below).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import Config
from .attention import AttentionContext, CrossAttention, SelfAttention
from .mlp import make_dropout, make_mlp
from .norm import make_norm


def _pre(x, norm, fn, drop, alpha):
    return x + drop(fn(norm(x)))


def _post(x, norm, fn, drop, alpha):
    return norm(x + drop(fn(x)))


def _deepnorm(x, norm, fn, drop, alpha):
    y = norm(x)
    return alpha * y + drop(fn(y))


RESIDUALS = {"pre": _pre, "post": _post, "deepnorm": _deepnorm, "sandwich": _pre}


def deepnorm_alpha(n_layers: int) -> float:
    """GLM-130B (Zeng et al. 2023, section 2.1) and ChatGLM-6B's GLMBlock: alpha = (2N)^(1/2)."""
    return math.sqrt(2 * n_layers)


def deepnorm_beta(n_layers: int) -> float:
    """The init gain that goes with `deepnorm_alpha`: GLM-130B section 2.1, (2N)^(-1/2).

    DeepNet (Wang et al. 2022, table 1) pairs a decoder-only alpha = (2N)^(1/4) with
    beta = (8N)^(-1/4) (torchscale's Decoder); GLM-130B changed both to (2N)^(+-1/2), and plmlab's
    alpha is GLM-130B's, so its beta is too.
    """
    return (2 * n_layers) ** -0.5


def _post_norm(config: Config) -> nn.Module:
    return make_norm(config) if config.norm_placement == "sandwich" else nn.Identity()


class Block(nn.Module):
    def __init__(self, config: Config, cross_attention: bool = False) -> None:
        super().__init__()
        self.attn_norm = make_norm(config)
        self.attn = SelfAttention(config)
        if cross_attention:
            self.cross_norm = make_norm(config)
            self.cross = CrossAttention(config)
            self.cross_post_norm = _post_norm(config)
        self.mlp_norm = make_norm(config)
        self.mlp = make_mlp(config)
        # Sandwich-LN's second norms; an Identity (no parameters) for every other placement
        self.attn_post_norm, self.mlp_post_norm = _post_norm(config), _post_norm(config)
        self.drop = make_dropout(config.dropout)
        self.residual = RESIDUALS[config.norm_placement]
        self.alpha = deepnorm_alpha(config.n_layers)

    def forward(self, x: torch.Tensor, ctx: AttentionContext, layer: int) -> torch.Tensor:
        res = self.residual
        x = res(x, self.attn_norm, lambda h: self.attn_post_norm(self.attn(h, ctx, layer)), self.drop, self.alpha)
        if hasattr(self, "cross"):
            x = res(x, self.cross_norm, lambda h: self.cross_post_norm(self.cross(h, ctx, layer)), self.drop, self.alpha)
        return res(x, self.mlp_norm, lambda h: self.mlp_post_norm(self.mlp(h)), self.drop, self.alpha)

    def residual_branch_weights(self) -> list[torch.Tensor]:
        """What DeepNet scales by beta at init (section 3, "ffn, v_proj, out_proj"): the value and
        output projections of each attention and every FFN matrix. Queries and keys only shape the
        attention pattern, so they keep the plain init. Views, so scaling them scales the weights."""
        weights = [self.attn.value_weight(), self.attn.o.weight]
        if hasattr(self, "cross"):
            weights += [self.cross.value_weight(), self.cross.o.weight]
        return weights + [m.weight for m in self.mlp.modules() if isinstance(m, nn.Linear)]
