"""WordPiece (BERT): a deterministic trainer, and the pipeline transformers builds from a bare
vocab.txt."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import tokenizers as hf
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from plmlab.errors import PlmlabError
from plmlab.tokenizers.styles import STYLES, Style, special_token, special_tokens_of

def bert_pipeline(vocab: dict[str, int] | None, unk: str, lowercase: bool, strip_accents: bool | None,
                  chinese: bool = True) -> hf.Tokenizer:
    """BERT's WordPiece pipeline (BertTokenizerFast's): normaliser, pre-tokenizer, decoder."""
    backend = hf.Tokenizer(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=chinese, strip_accents=strip_accents, lowercase=lowercase)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    return backend


def token_text(value) -> str | None:
    """A special token's text from a config value (transformers may write an AddedToken as a dict)."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


_PUA = 0xF0000  # Unicode supplementary private use planes 15-16: stand-ins for "##c" symbols


def train_wordpiece(spec: Style, vocab_size: int, opts: dict, texts: Iterable[str]) -> hf.Tokenizer:
    """WordPiece vocabulary learned as HF's WordPieceTrainer does (BPE merges where a word's
    non-initial characters are "##c" symbols; every character also kept bare), but deterministic.

    HF numbers the "##c" symbols in hash-map order, so merges with tied counts break ties
    differently from run to run (measured: a different vocabulary on every run). Plain BPE is
    deterministic, so each continuation character is remapped to its own private-use character,
    BPE is trained on the remapped words, and the learned tokens are mapped back to "##..."."""
    unk = spec.specials["unk"]
    backend = bert_pipeline(None, unk, opts["lowercase"], opts["strip_accents"])
    cont: dict[str, str] = {}  # continuation character -> its private-use stand-in

    def stand_in(c: str) -> str:
        if c not in cont:
            cont[c] = chr(_PUA + len(cont))
        return cont[c]
    chars: set[str] = set()

    def remapped(text: str) -> str:
        text = "".join(c for c in backend.normalizer.normalize_str(text) if ord(c) < _PUA)
        chars.update(text)
        words = [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(text)]
        return " ".join(w[0] + "".join(stand_in(c) for c in w[1:]) for w in words)

    lines = [remapped(t) for t in texts]  # a first pass to know the alphabet
    alphabet = sorted(c for c in chars if not c.isspace())  # HF keeps every character bare too
    helper = hf.Tokenizer(models.BPE())
    helper.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    helper.train_from_iterator(lines, trainer=trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=opts.get("min_frequency", 2), show_progress=False,
        special_tokens=special_tokens_of(spec), initial_alphabet=alphabet))
    back = {v: k for k, v in cont.items()}
    vocab: dict[str, int] = {}
    for token, _ in sorted(helper.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1]):
        text = "".join(back.get(c, c) for c in token)
        vocab.setdefault("##" + text if token[0] in back else text, len(vocab))
    backend.model = models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100)
    backend.add_special_tokens(special_tokens_of(spec))
    return backend


def wordpiece_from_vocab(vocab_file: Path, config: dict) -> hf.Tokenizer:
    """Build BERT's tokenizer from vocab.txt the way transformers' BertTokenizerFast does."""
    try:
        vocab = models.WordPiece.read_file(str(vocab_file))
    except Exception as e:
        raise PlmlabError(f"{vocab_file}: cannot read vocabulary ({str(e).splitlines()[0]})") from None
    tokens = {r: token_text(config.get(f"{r}_token")) or d for r, d in STYLES["bert"].specials.items()}
    if tokens["unk"] not in vocab:
        raise PlmlabError(f"{vocab_file}: the unknown token {tokens['unk']!r} is not in the vocabulary")
    backend = bert_pipeline(vocab, tokens["unk"], config.get("do_lower_case", True), config.get("strip_accents"),
                            chinese=config.get("tokenize_chinese_chars", True))
    backend.add_special_tokens([special_token(t) for t in tokens.values() if t in vocab])
    cls, sep = tokens["cls"], tokens["sep"]
    if cls in vocab and sep in vocab:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])
    return backend
