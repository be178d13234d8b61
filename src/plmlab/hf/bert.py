"""BERT, RoBERTa and ALBERT checkpoints: one table of names per family, every head layout.

One `model_type` covers several classes (`BertModel`, `BertForMaskedLM`, `BertForPreTraining`,
`BertForSequenceClassification` ...). On load, the `architectures` entry says which
fine-tuning head a `classifier` is (sequence or token) and the checkpoint's keys say which
other parts it carries: the original `bert-base-uncased` says `BertForMaskedLM` but stores the
pooler and the NSP head too, and they are loaded rather than refused. On save, the class is
chosen from the config (see `architecture`).

Tied weights: transformers 5 stores the MLM decoder once, under the word embeddings, and its
bias once, as `cls.predictions.bias` / `lm_head.bias` / `predictions.bias`; older checkpoints
may also carry `*.decoder.bias`, which is the same tensor and is ignored.
"""

from __future__ import annotations

from ..config import Config
from .adapter import Adapter, Rule, copy, fused_qkv, require
from .hfconfig import ACT_HF, HFConfig

# our encoder layer -> HF names, BERT / RoBERTa layout (per layer, under encoder.layer.{i}.)
BERT_LAYER = {
    "attn_norm": "attention.output.LayerNorm", "attn.o": "attention.output.dense",
    "mlp.up": "intermediate.dense", "mlp.down": "output.dense", "mlp_norm": "output.LayerNorm",
}
BERT_QKV = ("attention.self.query", "attention.self.key", "attention.self.value")
ALBERT_LAYER = {
    "attn_norm": "attention.LayerNorm", "attn.o": "attention.dense",
    "mlp.up": "ffn", "mlp.down": "ffn_output", "mlp_norm": "full_layer_layer_norm",
}
ALBERT_QKV = ("attention.query", "attention.key", "attention.value")


def _both(ours: str, theirs: str) -> list[Rule]:
    return [copy(f"{ours}.weight", f"{theirs}.weight"), copy(f"{ours}.bias", f"{theirs}.bias")]


class EncoderAdapter(Adapter):
    """The shared BERT-style table; subclasses name their layer, head and class layout."""

    layer_names = BERT_LAYER
    qkv_names = BERT_QKV
    layer_prefix = "encoder.layer.{i}."
    pooler_name = "pooler.dense"
    mlm_names = {"head.dense": "cls.predictions.transform.dense", "head.norm": "cls.predictions.transform.LayerNorm",
                 "head.proj": "cls.predictions"}  # head.proj.bias <- cls.predictions.bias
    pair_name: str | None = "cls.seq_relationship"
    # our head layout -> HF class suffix; "pair" = a pair head without the MLM head
    classes = {"pretraining": "ForPreTraining", "mlm": "ForMaskedLM", "pair": "ForNextSentencePrediction",
               "sequence": "ForSequenceClassification", "token": "ForTokenClassification", "base": "Model"}
    class_prefix = "Bert"

    # --- config ------------------------------------------------------------------------------
    def config_from_hf(self, hf: HFConfig) -> dict:
        kind = self.kind_of(hf.architecture(self.class_prefix + "Model"))
        fields = dict(
            arch="encoder", vocab_size=hf.integer("vocab_size"), d_model=hf.integer("hidden_size"),
            n_layers=hf.integer("num_hidden_layers"), n_heads=hf.integer("num_attention_heads"),
            d_ff=hf.integer("intermediate_size"), max_positions=hf.integer("max_position_embeddings", 512),
            norm="layernorm", norm_eps=hf.number("layer_norm_eps", 1e-12), norm_placement="post", final_norm=False,
            embedding_norm=True, position="learned", activation=hf.activation("hidden_act", "gelu"),
            qkv_bias=True, out_bias=True, mlp_bias=True, type_vocab_size=hf.integer("type_vocab_size", 2),
            head="mlm" if kind in ("pretraining", "mlm") else "none", lm_head_bias=True,
            tie_embeddings=hf.flag("tie_word_embeddings", True),
            pooler=kind in ("pretraining", "pair", "sequence", "base"),
            pair_head=kind in ("pretraining", "pair"), classifier=kind if kind in ("sequence", "token") else "none",
            label_names=_label_names(hf) if kind in ("sequence", "token") else [],
            dropout=hf.number("hidden_dropout_prob", 0.1), attn_dropout=hf.number("attention_probs_dropout_prob", 0.1),
            init_std=hf.number("initializer_range", 0.02), scaled_residual_init=False,
            pad_token_id=hf.token_id("pad_token_id"), bos_token_id=hf.token_id("bos_token_id"),
            eos_token_id=hf.token_id("eos_token_id"), tokenizer=self.model_type,
        )
        return {**fields, **self.extra_from_hf(hf)}

    def extra_from_hf(self, hf: HFConfig) -> dict:
        return {}

    def kind_of(self, architecture: str) -> str:
        for kind, suffix in self.classes.items():
            if suffix and architecture == self.class_prefix + suffix:
                return kind
        return "base"

    def refine(self, c: Config, reader) -> Config:
        """Which parts the checkpoint carries decides which parts the model gets."""
        keys = {k.removeprefix(self.prefix) for k in reader.keys()}
        has = lambda name: any(k.startswith(name + ".") for k in keys)  # noqa: E731
        pooler = has(self.pooler_name.split(".")[0])
        if c.classifier == "token":
            # *ForTokenClassification has no pooler, but a model fine-tuned from one that had
            # (bert-base, any plmlab MLM + NSP model) keeps it: load what is there.
            return c.replace(pooler=pooler)
        if c.classifier != "none":
            return c
        mlm = any(k.startswith(self.mlm_names["head.dense"]) for k in keys)
        pair = self.pair_name is not None and has(self.pair_name)
        return c.replace(head="mlm" if mlm else "none", pooler=pooler or pair, pair_head=pair)

    def architecture(self, c: Config) -> str:
        if c.classifier != "none":
            kind = c.classifier
        elif c.head == "mlm":
            kind = "pretraining" if c.pair_head else "mlm"
        else:
            kind = "pair" if c.pair_head else "base"
        return self.class_prefix + self.classes[kind]

    def config_to_hf(self, c: Config) -> dict:
        out = dict(
            model_type=self.model_type, architectures=[self.architecture(c)], vocab_size=c.vocab_size,
            hidden_size=c.d_model, num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads,
            intermediate_size=c.d_ff, hidden_act=ACT_HF[c.activation], hidden_dropout_prob=c.dropout,
            attention_probs_dropout_prob=c.attn_dropout, max_position_embeddings=c.max_positions + c.position_offset,
            type_vocab_size=c.type_vocab_size, initializer_range=c.init_std, layer_norm_eps=c.norm_eps,
            pad_token_id=c.pad_token_id, bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
            tie_word_embeddings=c.tie_embeddings,
        )
        if c.classifier != "none":
            out["id2label"] = dict(enumerate(c.label_names))
            out["label2id"] = {name: i for i, name in enumerate(c.label_names)}
        return out

    # --- representability ------------------------------------------------------------------------
    def mismatch(self, c: Config) -> str | None:
        return require({
            "an encoder": c.arch == "encoder",
            "post-LN LayerNorm with bias, an embedding norm and no final norm": c.norm == "layernorm"
            and c.norm_bias and c.norm_placement == "post" and c.embedding_norm and not c.final_norm,
            "learned positions": c.position == "learned",
            "multi-head attention": c.kv_heads == c.n_heads and c.head_dim in (None, c.d_model // c.n_heads)
            and c.attn_scale is None,
            "biases everywhere": c.qkv_bias and c.out_bias and c.mlp_bias,
            "a plain MLP": not c.gated_mlp and c.activation in ACT_HF,
            "an MLM head with bias (or none)": c.head in ("mlm", "none") and c.output_scale is None
            and (c.head == "none" or c.lm_head_bias),
            "token types": c.type_vocab_size >= 1,
            "a tanh pooler": c.pooler_activation == "tanh",  # a ReLU pre-classifier is DistilBERT's
        }) or self.family_mismatch(c)

    def family_mismatch(self, c: Config) -> str | None:
        return require({
            "no position offset": c.position_offset == 0,
            "no embedding factorisation or layer sharing": c.embed_dim == c.d_model and not c.shared_layers,
        })

    # --- the table ---------------------------------------------------------------------------------
    def rules(self, c: Config) -> list[Rule]:
        rules = [
            copy("embed.tokens.weight", "embeddings.word_embeddings.weight"),
            copy("embed.positions.weight", "embeddings.position_embeddings.weight"),
            copy("embed.token_types.weight", "embeddings.token_type_embeddings.weight"),
            *_both("embed.norm", "embeddings.LayerNorm"),
            *self.layer_rules(c),
            *_both("pooler.dense", self.pooler_target(c)),
            *_both("head.dense", self.mlm_names["head.dense"]),
            *_both("head.norm", self.mlm_names["head.norm"]),
            copy("head.proj.weight", self.mlm_names["head.proj"] + ".decoder.weight"),
            copy("head.proj.bias", self.mlm_names["head.proj"] + ".bias"),
            *_both("classifier", self.classifier_target(c)),
        ]
        if self.pair_name:
            rules += _both("pair_head", self.pair_name)
        return rules

    def layer_rules(self, c: Config) -> list[Rule]:
        ours = "encoder.layers.0." if c.shared_layers else "encoder.layers.{i}."
        theirs = self.layer_prefix
        rules = [fused_qkv(ours + "attn.qkv.weight", *(theirs + q + ".weight" for q in self.qkv_names)),
                 fused_qkv(ours + "attn.qkv.bias", *(theirs + q + ".bias" for q in self.qkv_names))]
        for a, b in self.layer_names.items():
            rules += _both(ours + a, theirs + b)
        return rules

    def pooler_target(self, c: Config) -> str:
        return self.pooler_name

    def classifier_target(self, c: Config) -> str:
        return "classifier"


class Bert(EncoderAdapter):
    pass


class Roberta(EncoderAdapter):
    """RoBERTa: BERT's layers; positions offset by padding_idx + 1; `lm_head`; no NSP class.

    Its sequence-classification head is dense + tanh + out_proj on `<s>`: the same function as
    BERT's pooler + classifier (dropout aside), so `classifier.dense` maps to our pooler.
    """

    mlm_names = {"head.dense": "lm_head.dense", "head.norm": "lm_head.layer_norm", "head.proj": "lm_head"}
    pair_name = None
    class_prefix = "Roberta"

    def extra_from_hf(self, hf: HFConfig) -> dict:
        pad = hf.integer("pad_token_id", 1)
        offset = pad + 1  # position ids start at padding_idx + 1
        return dict(position_offset=offset, max_positions=hf.integer("max_position_embeddings", 514) - offset,
                    norm_eps=hf.number("layer_norm_eps", 1e-5), pad_token_id=pad)

    def family_mismatch(self, c: Config) -> str | None:
        return require({
            "positions offset by padding_idx + 1": c.pad_token_id is not None and c.position_offset == c.pad_token_id + 1,
            "no embedding factorisation or layer sharing": c.embed_dim == c.d_model and not c.shared_layers,
            "no pair head (RoBERTa has no NSP)": not c.pair_head,
            "an exact-GELU MLM head": c.head == "none" or c.activation == "gelu",
        })

    def pooler_target(self, c: Config) -> str:
        return "classifier.dense" if c.classifier == "sequence" else self.pooler_name

    def classifier_target(self, c: Config) -> str:
        return "classifier.out_proj" if c.classifier == "sequence" else "classifier"


class Albert(EncoderAdapter):
    """ALBERT: embeddings at E, `embedding_hidden_mapping_in` (E -> H), layer groups, SOP head."""

    layer_names = ALBERT_LAYER
    qkv_names = ALBERT_QKV
    layer_prefix = "encoder.albert_layer_groups.{i}.albert_layers.0."
    pooler_name = "pooler"
    mlm_names = {"head.dense": "predictions.dense", "head.norm": "predictions.LayerNorm", "head.proj": "predictions"}
    pair_name = "sop_classifier.classifier"
    classes = {**EncoderAdapter.classes, "pair": None}
    class_prefix = "Albert"

    def extra_from_hf(self, hf: HFConfig) -> dict:
        return dict(embedding_dim=hf.integer("embedding_size", 128),
                    shared_layers=hf.integer("num_hidden_groups", 1) == 1,
                    activation=hf.activation("hidden_act", "gelu_new"), dropout=hf.number("hidden_dropout_prob", 0.0),
                    attn_dropout=hf.number("attention_probs_dropout_prob", 0.0),
                    pad_token_id=hf.integer("pad_token_id", 0))

    def config_to_hf(self, c: Config) -> dict:
        return {**super().config_to_hf(c), "embedding_size": c.embed_dim, "inner_group_num": 1,
                "num_hidden_groups": 1 if c.shared_layers else c.n_layers,
                "classifier_dropout_prob": c.dropout}

    def family_mismatch(self, c: Config) -> str | None:
        return require({
            "no position offset": c.position_offset == 0,
            "a factorised embedding (E != H)": c.embed_dim != c.d_model,
            "no pair head without the MLM head": c.head == "mlm" or not c.pair_head,
        })

    def rules(self, c: Config) -> list[Rule]:
        # shared layers: our encoder.layers.0 <-> group 0, applied n_layers times; unshared:
        # layer i <-> group i of one layer (`{i}` expands to 0 alone when ours has no `{i}`)
        return super().rules(c) + _both("embed.proj", "encoder.embedding_hidden_mapping_in")


def _label_names(hf: HFConfig) -> list[str]:
    """id2label in id order; JSON keys are strings ("0"), a Python-made dict's may be ints."""
    labels = hf.mapping("id2label") or {}
    return [str(labels.get(str(i), labels.get(i, f"LABEL_{i}"))) for i in range(len(labels))]


# Checkpoints from transformers < 4.31 stored these buffers; they are recomputed.
OLD_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
BERT_ADAPTER = Bert("bert", "bert.", top_level=("cls.", "classifier."), ignored=("cls.predictions.decoder.bias", *OLD_BUFFERS))
ROBERTA_ADAPTER = Roberta("roberta", "roberta.", top_level=("lm_head.", "classifier."),
                          ignored=("lm_head.decoder.bias", *OLD_BUFFERS))
ALBERT_ADAPTER = Albert("albert", "albert.", top_level=("predictions.", "sop_classifier.", "classifier."),
                        ignored=("predictions.decoder.bias", *OLD_BUFFERS))

ADAPTERS = [BERT_ADAPTER, ROBERTA_ADAPTER, ALBERT_ADAPTER]
