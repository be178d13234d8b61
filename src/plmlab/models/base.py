"""What every skeleton shares: the output record, initialisation, loss, cache construction."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..masks import IGNORE_INDEX
from ..nn.attention import KVCache
from ..nn.block import Block, deepnorm_beta


@dataclass
class ModelOutput:
    logits: torch.Tensor | None = None  # (B, T, V) when the model has an LM / MLM head
    last_hidden_state: torch.Tensor | None = None  # (B, T, d) after the final norm
    loss: torch.Tensor | None = None  # mean over labelled tokens (+ the pair loss, if any)
    pooled: torch.Tensor | None = None  # (B, d) tanh-pooled [CLS] (BERT / ALBERT)
    pair_logits: torch.Tensor | None = None  # (B, 2) NSP / SOP
    encoder_last_hidden_state: torch.Tensor | None = None
    cache: KVCache | None = None


class PretrainedModel(nn.Module):
    """Base class: holds the config and implements init, loss and the KV cache factory."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config

    # --- initialisation -------------------------------------------------------------------
    def init_weights(self) -> None:
        std, deepnorm = self.config.init_std, self.config.norm_placement == "deepnorm"
        # GPT-2 (Radford et al. 2019, section 2.3): residual projections scaled by
        # 1/sqrt(2 * n_layers) so the residual stream's variance does not grow with depth.
        # DeepNorm's beta answers the same question for its own residual rule, so it replaces this.
        scaled = self.config.scaled_residual_init and not deepnorm
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, std)
        for name, p in self.named_parameters():
            if name.endswith("positions.weight") or name.endswith("positions.block_weight"):
                nn.init.normal_(p, 0.0, std)
            if scaled and name.endswith(("attn.o.weight", "mlp.down.weight")):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.config.n_layers))
        if deepnorm:
            self._deepnorm_init()
        self.tie_weights()

    def _deepnorm_init(self) -> None:
        """DeepNet's init (Wang et al. 2022, section 3; GLM-130B section 2.1): the weights of
        every block's FFN and of its value and output projections get gain beta on their init,
        as torchscale's Decoder does by dividing its base init by init_scale = 1 / beta; biases stay
        zero (GLM-130B: "all bias terms are initialized to zero")."""
        beta = deepnorm_beta(self.config.n_layers)
        with torch.no_grad():
            for block in self.modules():  # a shared (ALBERT) block is visited once
                if isinstance(block, Block):
                    for weight in block.residual_branch_weights():
                        weight.mul_(beta)  # N(0, std) -> N(0, beta * std)

    def tie_weights(self) -> None:
        head = getattr(self, "head", None)
        if self.config.tie_embeddings and head is not None and hasattr(head, "proj"):
            head.proj.weight = self.embed.tokens.weight

    # --- loss -------------------------------------------------------------------------------
    @staticmethod
    def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over positions whose label is not -100; labels are already aligned
        with the logits (objectives shift causal targets themselves)."""
        return F.cross_entropy(logits.float().flatten(0, -2), labels.flatten(), ignore_index=IGNORE_INDEX)

    # --- decoding -------------------------------------------------------------------------
    def new_cache(self, batch: int, max_len: int, dtype: torch.dtype | None = None) -> KVCache:
        c = self.config
        param = next(self.parameters())
        n_layers = c.decoder_layers if c.arch == "encoder-decoder" else c.n_layers
        return KVCache(n_layers, batch, c.kv_heads, max_len, c.dim_head, dtype or param.dtype, param.device,
                       window=c.sliding_window, window_from=c.full_attention_layers)

    def num_parameters(self, non_embedding: bool = False) -> int:
        seen, total = set(), 0
        for name, p in self.named_parameters(remove_duplicate=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if non_embedding and name.startswith(("embed.", "decoder_embed.")):
                continue
            total += p.numel()
        return total
