"""GLM-4-0414 and GLM-Z1 (`Glm4ForCausalLM`, model_type "glm4"): GlmForCausalLM (hf/glm.py)
plus a second RMSNorm on each sublayer's output before the residual add, Sandwich-LN
(`norm_placement="sandwich"`):

    h = x + post_self_attn_layernorm(attn(input_layernorm(x)))
    y = h + post_mlp_layernorm(mlp(post_attention_layernorm(h)))

Everything else (partial interleaved rotary, fused [gate; up], bias on Q, K, V only) is GLM-4's.
"""

from __future__ import annotations

from ..config import Config
from .adapter import copy
from .glm import Glm, glm_shape
from .hfconfig import HFConfig
from .llama import llama_rules


class Glm4(Glm):
    def config_from_hf(self, hf: HFConfig) -> dict:
        return {**super().config_from_hf(hf), "norm_placement": "sandwich",
                "max_positions": hf.integer("max_position_embeddings", 131072)}

    def config_to_hf(self, c: Config) -> dict:
        return {**super().config_to_hf(c), "model_type": "glm4", "architectures": ["Glm4ForCausalLM"]}

    def mismatch(self, c: Config) -> str | None:
        return glm_shape(c, placement="sandwich")

    def rules(self, c: Config):
        layer, hf = "decoder.layers.{i}.", "layers.{i}."
        return llama_rules(c, fused_gate_up=True) + [
            copy(layer + "attn_post_norm.weight", hf + "post_self_attn_layernorm.weight"),
            copy(layer + "mlp_post_norm.weight", hf + "post_mlp_layernorm.weight"),
        ]


GLM4_ADAPTER = Glm4("glm4", "model.", ignored=("rotary_emb.inv_freq",))

ADAPTERS = [GLM4_ADAPTER]
