"""Mistral (`MistralForCausalLM`) and Qwen2 (`Qwen2ForCausalLM`): LlamaForCausalLM's layout and
rule table, with two named differences each.

    Mistral   no biases; sliding-window attention on every layer (Jiang et al. 2023, section 2:
              `sliding_window` = W, a query sees the W keys ending at itself)
    Qwen2     bias on Q, K and V but not on O (Qwen2 report, section 2.2.1: "QKV bias");
              `use_sliding_window` windows the layers from `max_window_layers` on

transformers' per-layer `layer_types` is read back and refused unless it is the pattern these
two fields describe, so a hand-edited config never loads with attention silently changed.
"""

from __future__ import annotations

from ..config import Config
from .adapter import require
from .hfconfig import HFConfig
from .llama import Llama, llama_checks

FULL, SLIDING = "full_attention", "sliding_attention"


def layer_types(c: Config) -> list[str]:
    """transformers' per-layer attention kinds for `c`'s window."""
    return [SLIDING if c.sliding_window is not None and i >= c.full_attention_layers else FULL
            for i in range(c.n_layers)]


def check_layer_types(hf: HFConfig, fields: dict) -> None:
    """Refuse a `layer_types` list that is not the window pattern `fields` describe."""
    stored = hf.data.get("layer_types")
    if stored is None:
        return
    expected = layer_types(Config.from_dict({k: v for k, v in fields.items() if k != "notes"}))
    if stored != expected:
        raise hf.error(f"layer_types {stored!r} is not the pattern plmlab maps (full attention in the first "
                       f"{fields['full_attention_layers']} layers, then a window of {fields['sliding_window']})")


class Mistral(Llama):
    def config_from_hf(self, hf: HFConfig) -> dict:
        fields = {**super().config_from_hf(hf), "qkv_bias": False, "out_bias": False, "mlp_bias": False,
                  "max_positions": hf.integer("max_position_embeddings", 4096 * 32),
                  "sliding_window": hf.integer("sliding_window", None), "full_attention_layers": 0}
        check_layer_types(hf, fields)
        return fields

    def config_to_hf(self, c: Config) -> dict:
        out = {**super().config_to_hf(c), "model_type": "mistral", "architectures": ["MistralForCausalLM"],
               "sliding_window": c.sliding_window}
        for key in ("attention_bias", "mlp_bias"):  # MistralConfig has no biases to switch
            out.pop(key)
        return out

    def mismatch(self, c: Config) -> str | None:
        return require({**llama_checks(c), "no biases": not (c.qkv_bias or c.out_bias or c.mlp_bias),
                        "a window on every layer or none": c.full_attention_layers == 0})


class Qwen2(Llama):
    def config_from_hf(self, hf: HFConfig) -> dict:
        n_layers = hf.integer("num_hidden_layers")
        windowed = hf.flag("use_sliding_window", False)
        fields = {**super().config_from_hf(hf), "qkv_bias": True, "out_bias": False, "mlp_bias": False,
                  "max_positions": hf.integer("max_position_embeddings", 32768), "tokenizer": "gpt2",
                  "sliding_window": hf.integer("sliding_window", 4096) if windowed else None,
                  "full_attention_layers": min(hf.integer("max_window_layers", 28), n_layers) if windowed else 0}
        check_layer_types(hf, fields)
        return fields

    def config_to_hf(self, c: Config) -> dict:
        out = {**super().config_to_hf(c), "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
               "use_sliding_window": c.sliding_window is not None, "sliding_window": c.sliding_window,
               "max_window_layers": c.full_attention_layers if c.sliding_window is not None else c.n_layers,
               "layer_types": layer_types(c)}
        for key in ("attention_bias", "mlp_bias", "head_dim"):  # Qwen2 fixes its biases and head size
            out.pop(key)
        return out

    def mismatch(self, c: Config) -> str | None:
        return require({**llama_checks(c), "bias on Q, K and V only": c.qkv_bias and not c.out_bias
                        and not c.mlp_bias, "head_dim = d_model / n_heads": c.dim_head * c.n_heads == c.d_model})


MISTRAL_ADAPTER = Mistral("mistral", "model.", ignored=("rotary_emb.inv_freq",))
QWEN2_ADAPTER = Qwen2("qwen2", "model.", ignored=("rotary_emb.inv_freq",))

ADAPTERS = [MISTRAL_ADAPTER, QWEN2_ADAPTER]
