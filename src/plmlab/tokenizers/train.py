"""Training a tokenizer of a style, deterministically; byte-level BPE lives here, WordPiece and
Unigram (whose HF trainers need determinism fixes) in their own modules."""

from __future__ import annotations

from collections.abc import Iterable

import tokenizers as hf
from tokenizers import decoders, models, pre_tokenizers, trainers

from plmlab.errors import PlmlabError
from plmlab.tokenizers.styles import (DEFAULT_VOCAB_SIZE, Style, get_style, post_processor, special_token,
                                      special_tokens_of)
from plmlab.tokenizers.tokenizer import Tokenizer
from plmlab.tokenizers.unigram import train_unigram
from plmlab.tokenizers.wordpiece import train_wordpiece

MAX_VOCAB_SIZE = 1 << 20  # ids a trained tokenizer may have: 4x the largest published vocabulary


def train_tokenizer(texts: Iterable[str], style: str, vocab_size: int = DEFAULT_VOCAB_SIZE,
                    **options) -> Tokenizer:
    """Train a tokenizer of ``style`` on ``texts`` (deterministic for the same input).

    ``vocab_size`` counts every id (specials and, for T5, the sentinels). Options: ``lowercase``,
    ``strip_accents`` (bert); ``lowercase``, ``keep_accents`` (albert); ``add_prefix_space``
    (gpt2, llama, roberta, glm); ``extra_ids`` (t5); ``min_frequency`` (all, default 2).
    """
    spec = get_style(style)
    unknown = set(options) - set(spec.options) - {"min_frequency"}
    if unknown:
        raise PlmlabError(f"unknown option(s) for style {style!r}: {', '.join(sorted(unknown))}")
    opts = {**spec.options, **options}
    # T5 sentinels and the style's `last` specials (BART's <mask>) are added after training
    n_model = vocab_size - opts.get("extra_ids", 0) - len(spec.last)
    if n_model < len(set(spec.specials.values())) + 2:
        raise PlmlabError(f"vocab_size {vocab_size} is too small for style {style!r}")
    if vocab_size > MAX_VOCAB_SIZE:  # the trainers allocate per id up front: 1e9 ids is ~70 GB, then a Rust abort
        raise PlmlabError(f"vocab_size {vocab_size:,} is above {MAX_VOCAB_SIZE:,}; the largest published "
                          "vocabularies have about 256K ids (Gemma 256,000; Qwen2 151,646; GLM-4 151,552)")
    backend = _BUILDERS[spec.algorithm](spec, n_model, opts, texts)
    if opts.get("extra_ids"):
        # Added after the learned pieces, <extra_id_99> first: <extra_id_0> gets the last id.
        sentinels = [special_token(f"<extra_id_{i}>") for i in reversed(range(opts["extra_ids"]))]
        backend.add_special_tokens(sentinels)
    if spec.last:
        backend.add_special_tokens(special_tokens_of(spec, last=True))  # the vocabulary's last ids
    backend.post_processor = post_processor(spec, backend, opts)
    return Tokenizer(backend, style, dict(spec.specials), spec.model_max_length, opts)


def train_byte_level_bpe(spec: Style, vocab_size: int, opts: dict, texts: Iterable[str]) -> hf.Tokenizer:
    backend = hf.Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=opts["add_prefix_space"])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=opts.get("min_frequency", 2), show_progress=False,
        special_tokens=special_tokens_of(spec), initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts, trainer=trainer)
    return backend


_BUILDERS = {"bpe": train_byte_level_bpe, "wordpiece": train_wordpiece, "unigram": train_unigram}
