"""XLM checkpoints (Lample & Conneau 2019; transformers' `XLMWithLMHeadModel` / `XLMModel`).

XLM is BERT's post-LN encoder with three differences the table below carries:

* embeddings = tokens + positions (learned, or the fixed sinusoidal table when
  `sinusoidal_embeddings`) + a LANGUAGE embedding per token (`n_langs` > 1 and `use_lang_emb`),
  then LayerNorm; no token types (HF adds `token_type_ids` through the *word* table, which
  plmlab does not offer);
* the FFN is always 4 x emb_dim wide, GELU (exact) or ReLU (`gelu_activation`);
* the head, `pred_layer`, is one linear map tied to the word embeddings, with a bias (the
  adaptive-softmax variant, `asm`, is refused: its clustered parameters have no plmlab head).

`causal` XLM (the CLM models) is the same network under a triangular mask: it loads as a
plmlab decoder (post-LN, embedding norm, no final norm), so it generates with the KV cache.
Attention scales by 1/sqrt(head_dim), plmlab's default. Language names travel as `id2lang` /
`lang2id` <-> `Config.languages`.

Sinusoidal positions are stored by transformers as an ordinary `position_embeddings.weight`;
plmlab computes the table instead, so on load a stored table that is not the formula's (a
checkpoint that trained it) makes the config `learned`, and on save the table is written out.

HF XLM without an `attention_mask` masks every position from the count of non-pad tokens
(`pad_index`) on: pass an attention mask (or no pad ids) for the two to agree.
"""

from __future__ import annotations

import torch

from ..config import Config
from ..nn.position import SinusoidalPositions
from .adapter import Adapter, Rule, copy, fused_qkv, require
from .bert import _both
from .hfconfig import HFConfig

# our block -> XLM's per-layer module lists
LAYER = {"attn.o": "attentions.{i}.out_lin", "attn_norm": "layer_norm1.{i}", "mlp.up": "ffns.{i}.lin1",
         "mlp.down": "ffns.{i}.lin2", "mlp_norm": "layer_norm2.{i}"}
QKV = ("attentions.{i}.q_lin", "attentions.{i}.k_lin", "attentions.{i}.v_lin")
POSITIONS = "position_embeddings.weight"


def sinusoidal_table(c: Config) -> torch.Tensor:
    """The table `SinusoidalPositions` computes, as transformers stores it: (P, d_model)."""
    return SinusoidalPositions(c, c.d_model).table


def _tokens_only(ts: list[torch.Tensor], c: Config) -> torch.Tensor:
    return ts[0]  # the stored sinusoidal table is recomputed (checked in `refine`)


def _tokens_and_table(t: torch.Tensor, c: Config) -> list[torch.Tensor]:
    return [t, sinusoidal_table(c).to(t.dtype)]


def _languages(hf: HFConfig) -> tuple[int, list[str]]:
    """(n_languages, names in id order); 0 when the model adds no language vector."""
    n = hf.integer("n_langs", 1)
    if n <= 1 or not hf.flag("use_lang_emb", True):
        return 0, []
    id2lang = hf.mapping("id2lang") or {}
    names = [id2lang.get(str(i), id2lang.get(i)) for i in range(n)]
    return n, [str(x) for x in names] if all(isinstance(x, str) for x in names) and len(set(names)) == n else []


class XLM(Adapter):
    def config_from_hf(self, hf: HFConfig) -> dict:
        if hf.flag("asm", False):
            raise hf.error("asm=true (XLM's adaptive softmax head) is not supported; plmlab reads the linear pred_layer")
        if not hf.flag("is_encoder", True):
            raise hf.error("is_encoder=false: transformers' XLM has no decoder either")
        d_model = hf.integer("emb_dim")
        n_languages, languages = _languages(hf)
        base = hf.architecture("XLMWithLMHeadModel") == "XLMModel"
        return dict(
            arch="decoder" if hf.flag("causal", False) else "encoder", vocab_size=hf.integer("vocab_size"),
            d_model=d_model, n_layers=hf.integer("n_layers"), n_heads=hf.integer("n_heads"), d_ff=4 * d_model,
            max_positions=hf.integer("max_position_embeddings", 512), norm="layernorm",
            norm_eps=hf.number("layer_norm_eps", 1e-12), norm_placement="post", final_norm=False,
            embedding_norm=True, position="sinusoidal" if hf.flag("sinusoidal_embeddings", False) else "learned",
            activation="gelu" if hf.flag("gelu_activation", True) else "relu", type_vocab_size=0,
            head="none" if base else "lm", tie_embeddings=hf.flag("tie_word_embeddings", True), lm_head_bias=True,
            n_languages=n_languages, languages=languages, dropout=hf.number("dropout", 0.1),
            attn_dropout=hf.number("attention_dropout", 0.1), init_std=hf.number("init_std", 0.02),
            scaled_residual_init=False, pad_token_id=hf.token_id("pad_token_id", 2),
            bos_token_id=hf.token_id("bos_token_id", 0), eos_token_id=hf.token_id("eos_token_id", 1),
            tokenizer="roberta",
        )

    def refine(self, c: Config, reader) -> Config:
        """No `pred_layer` stored: a bare XLMModel. A stored sinusoidal table that differs from
        the formula was trained: keep it as a learned table."""
        keys = {k.removeprefix(self.prefix): k for k in reader.keys()}
        if c.head == "lm" and not any(k.startswith("pred_layer.") for k in keys):
            c = c.replace(head="none")
        if c.position == "sinusoidal" and POSITIONS in keys:
            stored = reader.get(keys[POSITIONS]).float()
            table = sinusoidal_table(c)
            if stored.shape != table.shape or not torch.allclose(stored, table, atol=1e-5):
                c = c.replace(position="learned")
        return c

    def config_to_hf(self, c: Config) -> dict:
        out = dict(
            model_type="xlm", architectures=["XLMWithLMHeadModel" if c.head == "lm" else "XLMModel"],
            vocab_size=c.vocab_size, emb_dim=c.d_model, n_layers=c.n_layers, n_heads=c.n_heads,
            dropout=c.dropout, attention_dropout=c.attn_dropout, gelu_activation=c.activation == "gelu",
            sinusoidal_embeddings=c.position == "sinusoidal", causal=c.arch == "decoder", asm=False,
            n_langs=max(1, c.n_languages), use_lang_emb=c.n_languages > 0,
            max_position_embeddings=c.max_positions, layer_norm_eps=c.norm_eps, init_std=c.init_std,
            is_encoder=True, tie_word_embeddings=c.tie_embeddings,
            pad_token_id=2 if c.pad_token_id is None else c.pad_token_id,
            bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
        )
        if c.languages:
            out["id2lang"] = dict(enumerate(c.languages))
            out["lang2id"] = {name: i for i, name in enumerate(c.languages)}
        return out

    def mismatch(self, c: Config) -> str | None:
        return require({
            "an encoder or decoder": c.arch in ("encoder", "decoder"),
            "post-LN LayerNorm with bias, an embedding norm and no final norm": c.norm == "layernorm"
            and c.norm_bias and c.norm_placement == "post" and c.embedding_norm and not c.final_norm,
            "learned or sinusoidal positions without offset": c.position in ("learned", "sinusoidal")
            and c.position_offset == 0,
            "multi-head attention": c.kv_heads == c.n_heads and c.head_dim in (None, c.d_model // c.n_heads)
            and c.attn_scale is None and c.sliding_window is None,
            "biases everywhere": c.qkv_bias and c.out_bias and c.mlp_bias,
            "a GELU or ReLU MLP of 4 x d_model": not c.gated_mlp and c.activation in ("gelu", "relu")
            and c.d_ff == 4 * c.d_model,
            "an LM head with bias (or none)": c.head == "none" or (c.head == "lm" and c.lm_head_bias
                                                                  and c.output_scale is None),
            "no token types, pooler or classifier": not c.type_vocab_size and not c.pooler and not c.pair_head
            and c.classifier == "none",
            "no embedding factorisation or layer sharing": c.embed_dim == c.d_model and not c.shared_layers,
        })

    def rules(self, c: Config) -> list[Rule]:
        stack = "decoder" if c.arch == "decoder" else "encoder"
        if c.position == "sinusoidal":  # the table rides with the tokens: written out, read back as a check
            embeddings = [Rule("embed.tokens.weight", ("embeddings.weight", POSITIONS), _tokens_only,
                               _tokens_and_table)]
        else:
            embeddings = [copy("embed.tokens.weight", "embeddings.weight"), copy("embed.positions.weight", POSITIONS)]
        rules = [*embeddings, copy("embed.languages.weight", "lang_embeddings.weight"),
                 *_both("embed.norm", "layer_norm_emb")]
        ours = f"{stack}.layers.{{i}}."
        rules += [fused_qkv(ours + "attn.qkv.weight", *(q + ".weight" for q in QKV)),
                  fused_qkv(ours + "attn.qkv.bias", *(q + ".bias" for q in QKV))]
        for a, b in LAYER.items():
            rules += _both(ours + a, b)
        return rules + [copy("head.proj.weight", "pred_layer.proj.weight"),
                        copy("head.proj.bias", "pred_layer.proj.bias")]


# transformers < 4.31 stored the position ids buffer
XLM_ADAPTER = XLM("xlm", "transformer.", top_level=("pred_layer.",), ignored=("position_ids",))

ADAPTERS = [XLM_ADAPTER]
