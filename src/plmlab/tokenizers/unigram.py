"""Unigram (ALBERT, T5: SentencePiece-style ▁ pieces), trained deterministically."""

from __future__ import annotations

import json
from collections.abc import Iterable

import tokenizers as hf
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

from plmlab.tokenizers.styles import Style, special_tokens_of


def train_unigram(spec: Style, vocab_size: int, opts: dict, texts: Iterable[str]) -> hf.Tokenizer:
    backend = hf.Tokenizer(models.Unigram())
    if "lowercase" in opts:  # ALBERT's SentencePiece normalisation
        steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
        steps += [] if opts["keep_accents"] else [normalizers.NFKD(), normalizers.StripAccents()]
        steps += [normalizers.Lowercase()] if opts["lowercase"] else []
        backend.normalizer = normalizers.Sequence(steps)
    else:  # T5's SentencePiece model normalises with NFKC
        backend.normalizer = normalizers.NFKC()
    # WhitespaceSplit first so runs of spaces never become "▁▁" pieces (as SentencePiece).
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace("▁", prepend_scheme="always")])
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, show_progress=False, special_tokens=special_tokens_of(spec),
        unk_token=spec.specials["unk"], max_piece_length=16)
    backend.train_from_iterator(texts, trainer=trainer)
    n_special = len(special_tokens_of(spec))
    pieces = json.loads(backend.to_str())["model"]["vocab"]
    vocab = [(p, float(s)) for p, s in pieces[:n_special]] + _canonical_pieces(pieces[n_special:])
    unk_id = [p for p, _ in vocab].index(spec.specials["unk"])
    backend.model = models.Unigram(vocab, unk_id=unk_id, byte_fallback=False)
    return backend


def _canonical_pieces(pieces: list[list]) -> list[tuple[str, float]]:
    """Make HF's Unigram training deterministic (measured: ids differ from run to run).

    Two causes: (1) characters the trainer must keep but did not score get ``min_score + k *
    1e-4`` with ``k`` in hash-set order -- we give them that same ladder in sorted order; (2) the
    EM sums floats in hash-map order, so other scores differ in the last bits -- rounding to 1e-6
    and breaking ties by text fixes the order (= the ids)."""
    low = min(s for _, s in pieces)
    n_chars = sum(len(p) == 1 for p, _ in pieces)
    ladder = sorted(p for p, s in pieces if len(p) == 1 and s < low + 1e-4 * n_chars + 5e-5)
    scores = {p: round(s, 6) for p, s in pieces}
    scores.update({p: round(low + 1e-4 * k, 6) for k, p in enumerate(ladder)})
    return sorted(scores.items(), key=lambda ps: (-ps[1], ps[0]))
