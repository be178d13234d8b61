"""DistilBERT checkpoints (Sanh et al. 2019): BERT's encoder without token types and pooler.

    embeddings: word + learned positions -> LayerNorm (eps 1e-12, fixed in transformers)
    6 post-LN blocks: q_lin / k_lin / v_lin / out_lin with biases, sa_layer_norm, ffn.lin1 / lin2,
      output_layer_norm -- our encoder block with its names changed
    DistilBertForMaskedLM: vocab_transform -> GELU -> vocab_layer_norm -> vocab_projector (tied):
      plmlab's "mlm" head, weight for weight
    DistilBertForSequenceClassification: pre_classifier (d -> d) -> ReLU -> dropout
      (seq_classif_dropout) -> classifier on h[CLS]: our pooler with pooler_activation="relu"
    DistilBertForTokenClassification: dropout -> classifier on every token, as BERT's

`sinusoidal_pos_embds=True` only changes how transformers *initialises* the position table;
the table is stored in the checkpoint, so it loads as a learned table of the same values (and
is written back as one).
"""

from __future__ import annotations

from ..config import Config
from .adapter import Rule, copy, require
from .bert import EncoderAdapter, _both, _label_names
from .hfconfig import ACT_HF, HFConfig

LAYER = {"attn.o": "attention.out_lin", "attn_norm": "sa_layer_norm", "mlp.up": "ffn.lin1", "mlp.down": "ffn.lin2",
         "mlp_norm": "output_layer_norm"}
QKV = ("attention.q_lin", "attention.k_lin", "attention.v_lin")
NORM_EPS = 1e-12  # hard-coded in transformers' DistilBERT (every LayerNorm)


class DistilBert(EncoderAdapter):
    layer_names = LAYER
    qkv_names = QKV
    layer_prefix = "transformer.layer.{i}."
    pooler_name = "pre_classifier"
    mlm_names = {"head.dense": "vocab_transform", "head.norm": "vocab_layer_norm", "head.proj": "vocab_projector"}
    pair_name = None
    classes = {"mlm": "ForMaskedLM", "sequence": "ForSequenceClassification", "token": "ForTokenClassification",
               "base": "Model"}
    class_prefix = "DistilBert"

    def config_from_hf(self, hf: HFConfig) -> dict:
        kind = self.kind_of(hf.architecture("DistilBertModel"))
        classifier = kind if kind in ("sequence", "token") else "none"
        return dict(
            arch="encoder", vocab_size=hf.integer("vocab_size"), d_model=hf.integer("dim", 768),
            n_layers=hf.integer("n_layers", 6), n_heads=hf.integer("n_heads", 12), d_ff=hf.integer("hidden_dim", 3072),
            max_positions=hf.integer("max_position_embeddings", 512), norm="layernorm", norm_eps=NORM_EPS,
            norm_placement="post", final_norm=False, embedding_norm=True, position="learned",
            activation=hf.activation("activation", "gelu"), qkv_bias=True, out_bias=True, mlp_bias=True,
            type_vocab_size=0, head="mlm" if kind == "mlm" else "none", lm_head_bias=True,
            tie_embeddings=hf.flag("tie_word_embeddings", True), pooler=kind == "sequence", pooler_activation="relu",
            classifier=classifier, label_names=_label_names(hf) if classifier != "none" else [],
            classifier_dropout=hf.number("seq_classif_dropout", 0.2) if kind == "sequence" else None,
            dropout=hf.number("dropout", 0.1), attn_dropout=hf.number("attention_dropout", 0.1),
            init_std=hf.number("initializer_range", 0.02), scaled_residual_init=False,
            pad_token_id=hf.token_id("pad_token_id", 0), bos_token_id=hf.token_id("bos_token_id"),
            eos_token_id=hf.token_id("eos_token_id"), tokenizer="bert",
        )

    def config_to_hf(self, c: Config) -> dict:
        out = dict(
            model_type=self.model_type, architectures=[self.architecture(c)], vocab_size=c.vocab_size, dim=c.d_model,
            n_layers=c.n_layers, n_heads=c.n_heads, hidden_dim=c.d_ff, activation=ACT_HF[c.activation],
            dropout=c.dropout, attention_dropout=c.attn_dropout, max_position_embeddings=c.max_positions,
            sinusoidal_pos_embds=False, initializer_range=c.init_std, qa_dropout=c.dropout,
            seq_classif_dropout=c.dropout if c.classifier_dropout is None else c.classifier_dropout,
            pad_token_id=c.pad_token_id, bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
            tie_word_embeddings=c.tie_embeddings,
        )
        return {**out, **label_maps(c)}

    def mismatch(self, c: Config) -> str | None:
        # what BERT's layout shares with this one, then what DistilBERT fixes differently
        shared = super().mismatch(c.replace(type_vocab_size=max(1, c.type_vocab_size), pooler_activation="tanh"))
        return shared or require({
            "no token types": c.type_vocab_size == 0,
            f"LayerNorm eps {NORM_EPS}": c.norm_eps == NORM_EPS,
            "no pair head": not c.pair_head,
            "a ReLU pre_classifier only under a sequence classifier": c.pooler == (c.classifier == "sequence")
            and (not c.pooler or c.pooler_activation == "relu"),
        })

    def rules(self, c: Config) -> list[Rule]:
        return [
            copy("embed.tokens.weight", "embeddings.word_embeddings.weight"),
            copy("embed.positions.weight", "embeddings.position_embeddings.weight"),
            *_both("embed.norm", "embeddings.LayerNorm"),
            *self.layer_rules(c),
            *_both("head.dense", "vocab_transform"),
            *_both("head.norm", "vocab_layer_norm"),
            *_both("head.proj", "vocab_projector"),  # the weight is tied: stored once, as the embeddings
            *_both("pooler.dense", "pre_classifier"),
            *_both("classifier", "classifier"),
        ]


def label_maps(c: Config) -> dict:
    """id2label / label2id of a classifier's config.json (nothing without a classifier)."""
    if c.classifier == "none":
        return {}
    return {"id2label": dict(enumerate(c.label_names)), "label2id": {name: i for i, name in enumerate(c.label_names)}}


# transformers < 4.31 stored the position ids buffer
DISTILBERT_ADAPTER = DistilBert("distilbert", "distilbert.", ignored=("embeddings.position_ids",),
                                top_level=("vocab_", "pre_classifier.", "classifier."))

ADAPTERS = [DISTILBERT_ADAPTER]
