"""One `Config` for every architecture: families are data, not class hierarchies.

Every architectural switch of BERT/RoBERTa/ALBERT, T5, GPT-1/2/3, LLaMA 1/2/3 and GLM/ChatGLM/
GLM-4 is a typed field below, validated in `__post_init__`. Models never branch on a model's
*name*; they read these fields (and small registries pick modules from their values).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import PlmlabError

ARCHS = ("decoder", "encoder", "encoder-decoder")
NORMS = ("layernorm", "rmsnorm")
# pre: x + f(norm(x)) (GPT-2, LLaMA, T5, GLM repo); post: norm(x + f(x)) (BERT, GPT-1);
# deepnorm: norm(alpha * x + f(x)) with alpha = sqrt(2N) (GLM-130B / ChatGLM-6B, DeepNet paper);
# sandwich: x + norm2(f(norm1(x))), a second norm on each sublayer's output before the residual
# add (CogView's Sandwich-LN, Ding et al. 2021, section 2.4; GLM-4-0414's post_self_attn_layernorm
# and post_mlp_layernorm)
NORM_PLACEMENTS = ("pre", "post", "deepnorm", "sandwich")
# rotary-2d: ChatGLM-6B, each head's two halves rotate by position and block position (GLM 2-D)
POSITIONS = ("learned", "sinusoidal", "rotary", "relative", "learned-2d", "rotary-2d", "none")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu")
HEADS = ("lm", "mlm", "none")
# rope_scaling kinds -> the keys each needs (LLaMA-3.1 report, section 3: NTK-by-parts scaling)
ROPE_SCALINGS = {"default": (), "llama3": ("factor", "low_freq_factor", "high_freq_factor",
                                           "original_max_position_embeddings")}
CLASSIFIERS = ("none", "sequence", "token")
CHOICES = {"arch": ARCHS, "norm": NORMS, "norm_placement": NORM_PLACEMENTS, "position": POSITIONS,
           "activation": ACTIVATIONS, "head": HEADS, "classifier": CLASSIFIERS}
# DistilBERT (issue 15): the pooler's activation -- BERT's tanh, DistilBERT's ReLU
POOLER_ACTIVATIONS = ("tanh", "relu")
CHOICES["pooler_activation"] = POOLER_ACTIVATIONS


@dataclass
class Config:
    # --- skeleton -----------------------------------------------------------------------
    arch: str = "decoder"  # decoder (causal LM), encoder (bidirectional), encoder-decoder (T5)
    vocab_size: int = 50257
    d_model: int = 768
    n_layers: int = 12
    n_decoder_layers: int | None = None  # encoder-decoder only; defaults to n_layers
    n_heads: int = 12
    n_kv_heads: int | None = None  # GQA / MQA (LLaMA-2 70B, ChatGLM2); None = n_heads (MHA)
    head_dim: int | None = None  # None = d_model // n_heads; T5 and GLM-4 may differ
    d_ff: int = 3072  # MLP width (per branch for gated MLPs)
    max_positions: int = 1024  # context length; rows of a learned position table

    # --- normalisation --------------------------------------------------------------------
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    norm_bias: bool = True  # LayerNorm has a bias; RMSNorm never does
    norm_placement: str = "pre"
    final_norm: bool = True  # a norm after the last block (pre-norm stacks)
    embedding_norm: bool = False  # BERT / ALBERT: LayerNorm on the summed embeddings

    # --- positions ------------------------------------------------------------------------
    position: str = "learned"
    position_offset: int = 0  # RoBERTa: ids start at padding_idx + 1 = 2 (514 rows)
    rope_theta: float = 10000.0
    rotary_fraction: float = 1.0  # GLM-4 / ChatGLM2: rotate only this fraction of head_dim
    rotary_interleaved: bool = False  # False: rotate-half (HF LLaMA); True: pairs (0,1),(2,3)...
    rope_scaling: dict | None = None  # LLaMA-3.1 style {"rope_type": "llama3", ...}
    relative_buckets: int = 32  # T5
    relative_max_distance: int = 128  # T5

    # --- attention ------------------------------------------------------------------------
    qkv_bias: bool = True
    out_bias: bool = True
    attn_scale: float | None = None  # None = 1/sqrt(head_dim); T5 uses 1.0 (folded into init)
    # Sliding-window attention (Mistral 7B, Jiang et al. 2023, section 2): a query attends to
    # at most this many keys, itself included, and the KV cache keeps only the last
    # sliding_window - 1 of them. None = full causal attention.
    sliding_window: int | None = None
    # The first this many layers attend to everything, the rest use the window (Qwen2's
    # max_window_layers); 0 = every layer is windowed (Mistral).
    full_attention_layers: int = 0

    # --- MLP -------------------------------------------------------------------------------
    activation: str = "gelu_tanh"
    gated_mlp: bool = False  # SwiGLU / GeGLU: down(act(gate(x)) * up(x))
    mlp_bias: bool = True

    # --- embeddings and output ------------------------------------------------------------
    embedding_dim: int | None = None  # ALBERT factorisation E (vocab x E, then E -> d_model)
    type_vocab_size: int = 0  # BERT: 2 segment types; RoBERTa: 1; 0 = no token types
    # ERNIE (transformers' `ernie` with use_task_id; ERNIE 2.0 section 4.2.1, 3.0): a task-type
    # embedding added to the token, position and token-type embeddings; 0 = none (BERT, ERNIE 1.0)
    task_type_vocab_size: int = 0
    shared_layers: bool = False  # ALBERT: one set of layer weights applied n_layers times
    head: str = "lm"  # lm: linear to vocab; mlm: BERT transform + decoder; none: hidden states
    tie_embeddings: bool = True
    lm_head_bias: bool = False  # BERT/RoBERTa/ALBERT MLM decoder bias
    output_scale: float | None = None  # T5 v1.0: d_model ** -0.5 before the tied projection
    pooler: bool = False  # BERT / ALBERT: tanh(dense(h[CLS]))
    pair_head: bool = False  # NSP (BERT) / SOP (ALBERT): 2 logits on the pooled output
    # Fine-tuning head (BERT paper, section 4 / figure 4): "sequence" = a linear layer on the
    # pooled [CLS] (HF *ForSequenceClassification), "token" = on every token's state
    # (*ForTokenClassification); one output per entry of label_names.
    classifier: str = "none"
    label_names: list[str] = field(default_factory=list)
    # --- DistilBERT (Sanh et al. 2019; HF DistilBertForSequenceClassification) ---------------
    # Its sequence classifier is pre_classifier (d -> d) + ReLU on h[CLS] + dropout + classifier:
    # BERT's pooler + classifier with another activation, so the pooler's is a field.
    pooler_activation: str = "tanh"
    # Dropout before the fine-tuning classifier (DistilBERT's seq_classif_dropout, 0.2);
    # None = `dropout` (BERT's hidden_dropout_prob).
    classifier_dropout: float | None = None

    # --- language embeddings (XLM, Lample & Conneau 2019, section 3.1 / figure 1) -----------
    # A learned vector per language added to every token's embedding, like the position's;
    # the model takes `language_ids` (B, T). 0 = no language embeddings (every other family).
    n_languages: int = 0
    # The languages' names in id order (HF XLM's id2lang / lang2id); empty = unnamed ids.
    languages: list[str] = field(default_factory=list)

    # --- BART (Lewis et al. 2019; transformers' modeling_bart) ----------------------------
    # An encoder-decoder whose stacks share the token table but each have their own absolute
    # position table and embedding norm (BART's per-stack embed_positions and
    # layernorm_embedding); False = one Embeddings module feeds both stacks (T5).
    per_stack_embeddings: bool = False
    # Token embeddings times sqrt(d_model) before the positions are added (Vaswani et al. 2017,
    # section 3.4; BART's scale_embedding, off in the released facebook/bart-* checkpoints).
    scale_embedding: bool = False

    # --- regularisation and initialisation ------------------------------------------------
    dropout: float = 0.0  # residual, embedding and MLP dropout
    attn_dropout: float = 0.0
    init_std: float = 0.02
    scaled_residual_init: bool = True  # GPT-2: residual projections get std / sqrt(2 * n_layers)

    # --- special tokens and tokenizer -----------------------------------------------------
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    decoder_start_token_id: int | None = None  # T5: pad (0)
    tokenizer: str = "gpt2"  # tokenizer style trained for this preset (plmlab.tokenizers)

    # Free-form notes carried along (paper reference, source checkpoint), never read by models.
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_types(self)  # first: every check below may then trust them
        for name, choices in CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise PlmlabError(f"invalid config: {name}={value!r}; choose one of {', '.join(choices)}")
        _check_shape(self)
        _check_task_types(self)
        _check_positions(self)
        _check_heads(self)
        if self.classifier_dropout is not None and not 0.0 <= self.classifier_dropout < 1.0:
            raise PlmlabError("invalid config: classifier_dropout must be in [0, 1)")  # DistilBERT
        _check_languages(self)
        _check_decoder_start(self)
        if self.per_stack_embeddings and self.arch != "encoder-decoder":
            raise PlmlabError("invalid config: per_stack_embeddings needs arch=encoder-decoder")
        if self.norm == "rmsnorm":
            self.norm_bias = False

    # --- derived fields -------------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def dim_head(self) -> int:
        return self.head_dim or self.d_model // self.n_heads

    @property
    def rotary_dim(self) -> int:
        return int(self.dim_head * self.rotary_fraction)

    @property
    def embed_dim(self) -> int:
        return self.embedding_dim or self.d_model

    @property
    def decoder_layers(self) -> int:
        return self.n_decoder_layers or self.n_layers

    @property
    def is_causal(self) -> bool:
        return self.arch == "decoder"

    def decoder_start(self) -> int:
        """The token an encoder-decoder's decoder starts from: decoder_start_token_id, else pad
        (T5 starts from pad = 0), else 0. Teacher forcing and generation both use it."""
        if self.decoder_start_token_id is not None:
            return self.decoder_start_token_id
        return self.pad_token_id or 0

    # --- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        if not isinstance(data, dict):
            raise PlmlabError(f"invalid config: expected an object of Config fields, got {describe_value(data)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(map(str, set(data) - known))
        if unknown:
            raise PlmlabError(f"invalid config: unknown field(s) {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> "Config":
        return Config.from_dict({**self.to_dict(), **changes})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


# --- validation (Config.__post_init__) ---------------------------------------------------------
def _check_types(c: Config) -> None:
    for f in fields(c):
        try:
            setattr(c, f.name, typed_value(getattr(c, f.name), str(f.type)))
        except ValueError as e:
            raise PlmlabError(f"invalid config: {f.name} {e}") from None


def _check_decoder_start(c: Config) -> None:
    """An encoder-decoder's decoder starts from this id (teacher forcing and generation feed it to
    the embedding table): out of the vocabulary it would fail deep inside a forward pass."""
    if c.arch == "encoder-decoder" and not 0 <= c.decoder_start() < c.vocab_size:
        raise PlmlabError(f"invalid config: the decoder's start token {c.decoder_start()} (decoder_start_token_id, "
                          f"else pad_token_id) is outside the vocabulary of {c.vocab_size}")


def _check_task_types(c: Config) -> None:
    if c.task_type_vocab_size < 0:
        raise PlmlabError(f"invalid config: task_type_vocab_size must be >= 0, got {c.task_type_vocab_size}")
    if c.task_type_vocab_size and c.arch != "encoder":
        raise PlmlabError("invalid config: task_type_vocab_size (ERNIE's task-type embeddings) needs arch=encoder")


def _check_shape(c: Config) -> None:
    for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_positions"):
        if getattr(c, name) <= 0:
            raise PlmlabError(f"invalid config: {name} must be positive, got {getattr(c, name)}")
    if c.head_dim is None and c.d_model % c.n_heads:
        raise PlmlabError(f"invalid config: n_heads={c.n_heads} does not divide d_model={c.d_model}")
    if c.n_kv_heads is not None and (c.n_kv_heads <= 0 or c.n_heads % c.n_kv_heads):
        raise PlmlabError(f"invalid config: n_kv_heads={c.n_kv_heads} must divide n_heads={c.n_heads}")
    if not 0.0 <= c.dropout < 1.0 or not 0.0 <= c.attn_dropout < 1.0:
        raise PlmlabError("invalid config: dropout must be in [0, 1)")
    _check_window(c)


def _check_window(c: Config) -> None:
    if c.full_attention_layers < 0:
        raise PlmlabError(f"invalid config: full_attention_layers must be >= 0, got {c.full_attention_layers}")
    if c.sliding_window is None:
        return
    if c.sliding_window <= 0:
        raise PlmlabError(f"invalid config: sliding_window must be positive, got {c.sliding_window}")
    if c.arch != "decoder" or c.shared_layers or c.position == "relative":
        raise PlmlabError("invalid config: sliding_window needs arch=decoder, no shared_layers and no "
                          "relative positions")


def _check_positions(c: Config) -> None:
    if c.position == "rotary":
        if not 0.0 < c.rotary_fraction <= 1.0:
            raise PlmlabError(f"invalid config: rotary_fraction must be in (0, 1], got {c.rotary_fraction}")
        if c.rotary_dim % 2:
            raise PlmlabError(f"invalid config: the rotary dimension {c.rotary_dim} must be even")
    if c.position == "rotary-2d" and (c.dim_head % 4 or c.rotary_fraction != 1.0):
        raise PlmlabError("invalid config: rotary-2d needs head_dim divisible by 4 and rotary_fraction=1")
    if c.rope_scaling is not None:
        _check_rope_scaling(c.rope_scaling)


def _check_rope_scaling(scaling: dict) -> None:
    """Only LLaMA-3.1's scaling is implemented (nn/position.py); any other kind would be
    silently ignored and give wrong positions, so it is refused, as is a llama3 block with a
    key missing or not a number."""
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in ROPE_SCALINGS:
        raise PlmlabError(f"invalid config: rope_scaling type {kind!r} is not supported (plmlab implements "
                          f"{', '.join(ROPE_SCALINGS)})")
    for key in ROPE_SCALINGS[kind]:
        try:
            if typed_value(scaling.get(key), "float") <= 0:
                raise ValueError(f"must be positive, got {scaling[key]}")
        except ValueError as e:
            raise PlmlabError(f"invalid config: rope_scaling {key} {e}") from None


def _check_heads(c: Config) -> None:
    if c.pair_head and not c.pooler:
        raise PlmlabError("invalid config: pair_head (NSP/SOP) needs pooler=true")
    if c.classifier != "none":
        if c.arch != "encoder" or c.head != "none" or c.pair_head:
            raise PlmlabError("invalid config: a classifier needs arch=encoder, head=none and no pair_head")
        if len(c.label_names) < 2:
            raise PlmlabError("invalid config: a classifier needs at least two label_names")
        if c.classifier == "sequence" and not c.pooler:
            raise PlmlabError("invalid config: a sequence classifier reads the pooled [CLS]: set pooler=true")


def _check_languages(c: Config) -> None:
    if c.n_languages < 0 or c.n_languages == 1:
        raise PlmlabError(f"invalid config: n_languages must be 0 (none) or at least 2, got {c.n_languages}")
    if c.languages and (len(c.languages) != c.n_languages or len(set(c.languages)) != len(c.languages)):
        raise PlmlabError(f"invalid config: languages must name each of the n_languages={c.n_languages} "
                          f"languages once, got {c.languages}")


# what each annotation's base type asks of a value, for the error message
_EXPECTED = {"int": "an integer", "float": "a finite number", "bool": "true or false", "str": "a string",
             "dict": "an object", "list": "a list of strings"}


def typed_value(value: Any, type_name: str) -> Any:
    """`value` checked against an annotation (a string: `int | None`, `list[str]` ...); raises
    ValueError("must be an integer, got 'two' (a string)") for the caller to prefix with the
    field's name and where it came from (Config fields here, config.json keys in `hf/`).

    YAML and JSON hand over strings, floats, bools and nulls where an int belongs; caught here,
    they are one line naming the field instead of a traceback deep inside a model. Integers are
    accepted where a float belongs (and stored as floats); numpy scalars become Python numbers.
    """
    base = type_name.split("|")[0].split("[")[0].strip()
    if value is None:
        if "None" in type_name:
            return None
    elif base == "int":
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
    elif base == "float":
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif base == "list":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    elif isinstance(value, {"bool": bool, "str": str, "dict": dict}[base]):
        return value
    raise ValueError(f"must be {_EXPECTED[base]}, got {describe_value(value)}")


def describe_value(value: Any) -> str:
    """A short, one-line description of a bad value: `'abc' (a string)`, `null`, `2.7`, `a list`."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"{value[:40]!r} (a string)"
    if isinstance(value, (bool, int, float)):
        return json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return f"a {type(value).__name__}"


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn `["d_model=256", "norm=rmsnorm"]` into typed values using the field types."""
    types = {f.name: f.type for f in fields(Config)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.lstrip("-").replace("-", "_")
        if not sep or key not in types:
            raise PlmlabError(f"invalid override {item!r}: expected FIELD=VALUE with a Config field")
        out[key] = _parse_value(raw, str(types[key]), key)
    return out


def _parse_value(raw: str, type_name: str, key: str) -> Any:
    if raw.lower() in ("none", "null") and "None" in type_name:
        return None
    try:
        if type_name.startswith("bool"):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            return float(raw)
        if type_name.startswith("dict"):
            return json.loads(raw)
    except ValueError:
        raise PlmlabError(f"invalid value for {key}: {raw!r} is not a {type_name}") from None
    return raw
