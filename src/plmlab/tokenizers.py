"""Train, load and save tokenizers (a thin wrapper over Hugging Face ``tokenizers``).

Each *style* reproduces the tokenizer of one model family -- algorithm, normalisation, special
tokens and their ids, and what ``encode`` adds -- so that a saved directory loads in
``transformers.AutoTokenizer`` and gives the same ids:

======== ================== ================================================ =====================
style    algorithm          special tokens (id order)                        encode adds
======== ================== ================================================ =====================
gpt2     byte-level BPE     ``<|endoftext|>`` (bos = eos = unk)              nothing
llama    byte-level BPE     ``<unk> <s> </s>``                               ``<s> A``
bert     WordPiece          ``[PAD] [UNK] [CLS] [SEP] [MASK]``               ``[CLS] A [SEP] B [SEP]``
roberta  byte-level BPE     ``<s> <pad> </s> <unk> <mask>``                  ``<s> A </s></s> B </s>``
albert   Unigram (▁)        ``<pad> <unk> [CLS] [SEP] [MASK]``               ``[CLS] A [SEP] B [SEP]``
t5       Unigram (▁)        ``<pad> </s> <unk>`` ... ``<extra_id_99..0>``     ``A </s> B </s>``
glm      byte-level BPE     ``<|endoftext|> [MASK] [sMASK] [gMASK]``         ``[CLS] A``
                            ``<|startofpiece|> <|endofpiece|> [CLS] <unk>``
======== ================== ================================================ =====================

Notes on fidelity. LLaMA 1/2 use SentencePiece BPE with byte fallback; byte-level BPE is used
here instead (same effect: no unknown characters). GLM's tokenizer (THUDM/GLM, GPT-2 based)
wraps a single text as ``[CLS] text <|endoftext|>``; here encode stops after the text,
``[CLS] text`` (pair: ``[CLS] A <|endoftext|> B``), because an encoded *prompt* that ends in
``<|endoftext|>`` makes ``generate`` -- and transformers' pipeline on a saved directory --
start a new document instead of continuing the prompt. The GLM objectives and ``fill_blanks``
never relied on the template: they place ``[CLS]`` and ``<|endoftext|>`` around Part A by id. T5's 100 sentinels sit at the *end* of the vocabulary, counting down, so
``<extra_id_0>`` is the last id, as in Hugging Face's T5. ALBERT normalises as its
SentencePiece model does (``\\`\\``/``''`` to ``"``, NFKD, strip accents, lowercase); T5 uses
NFKC. Special tokens are added as ``AddedToken(special=True)`` so plain text never produces them.

Training is deterministic: the same texts give the same tokenizer.json, byte for byte. HF's BPE
trainer is; its WordPiece and Unigram trainers are not (hash-map order leaks into tie-breaking
and float sums), which ``_wordpiece`` and ``_canonical_pieces`` work around.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import tokenizers as hf
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, processors, trainers

from plmlab.data.files import write_text_atomic
from plmlab.errors import PlmlabError

ROLES = ("pad", "bos", "eos", "unk", "mask", "cls", "sep")  # the roles transformers names
DEFAULT_VOCAB_SIZE = 8192
_SENTINEL = re.compile(r"^<extra_id_(\d+)>$")
_EOT = "<|endoftext|>"


@dataclass(frozen=True)
class Style:
    """What defines a tokenizer family: algorithm, specials (role -> token; dict order is the
    id order), post-processing template (single, pair) and the transformers class name."""

    algorithm: str  # "bpe" (byte-level) | "wordpiece" | "unigram"
    specials: dict[str, str]
    template: tuple[str, str] | None  # None: no special tokens added by encode
    hf_class: str = "PreTrainedTokenizerFast"
    model_max_length: int = 512
    lstrip: tuple[str, ...] = ()  # specials that swallow the space before them ("a <mask>")
    options: dict = field(default_factory=dict)  # default options for train_tokenizer
    hf_options: dict = field(default_factory=dict)  # tokenizer_config key -> our option name


_CLS_SEP = ("[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1")
STYLES: dict[str, Style] = {
    "gpt2": Style("bpe", {"bos": _EOT, "eos": _EOT, "unk": _EOT}, None, "GPT2TokenizerFast", 1024,
                  options={"add_prefix_space": False}, hf_options={"add_prefix_space": "add_prefix_space"}),
    "llama": Style("bpe", {"unk": "<unk>", "bos": "<s>", "eos": "</s>"},
                   ("<s> $A", "<s> $A <s>:1 $B:1"), model_max_length=2048,
                   options={"add_prefix_space": False}),
    "bert": Style("wordpiece", {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]",
                                "mask": "[MASK]"}, _CLS_SEP, "BertTokenizerFast",
                  options={"lowercase": True, "strip_accents": None},
                  hf_options={"do_lower_case": "lowercase", "strip_accents": "strip_accents"}),
    "roberta": Style("bpe", {"bos": "<s>", "cls": "<s>", "pad": "<pad>", "eos": "</s>",
                             "sep": "</s>", "unk": "<unk>", "mask": "<mask>"}, ("roberta", ""),
                     "RobertaTokenizerFast", lstrip=("<mask>",), options={"add_prefix_space": False},
                     hf_options={"add_prefix_space": "add_prefix_space"}),
    "albert": Style("unigram", {"pad": "<pad>", "unk": "<unk>", "cls": "[CLS]", "bos": "[CLS]",
                                "sep": "[SEP]", "eos": "[SEP]", "mask": "[MASK]"}, _CLS_SEP,
                    "AlbertTokenizerFast", lstrip=("[MASK]",),
                    options={"lowercase": True, "keep_accents": False},
                    hf_options={"do_lower_case": "lowercase", "keep_accents": "keep_accents"}),
    "t5": Style("unigram", {"pad": "<pad>", "eos": "</s>", "unk": "<unk>"},
                ("$A </s>", "$A </s> $B </s>"), options={"extra_ids": 100}),
    "glm": Style("bpe", {"eos": _EOT, "pad": _EOT, "mask": "[MASK]", "smask": "[sMASK]",
                         "gmask": "[gMASK]", "sop": "<|startofpiece|>", "eop": "<|endofpiece|>",
                         "cls": "[CLS]", "unk": "<unk>"},
                 ("[CLS] $A", f"[CLS] $A {_EOT} $B:1"), model_max_length=1024,
                 options={"add_prefix_space": False}),
}


class Tokenizer:
    """A ``tokenizers.Tokenizer`` plus what plmlab needs to know about its special tokens.

    ``special_tokens`` maps a role (``pad``, ``eos``, ``mask``, GLM's ``gmask`` ...) to its token
    string. ``special_ids`` maps those roles to ids, plus any other special token (keyed by its
    text) except T5 sentinels, which are in ``sentinel_ids`` (``<extra_id_0>`` first).
    ``options`` are the training options (``lowercase`` ...), saved so transformers rebuilds the
    same pipeline.
    """

    def __init__(self, backend: hf.Tokenizer, style: str = "custom",
                 special_tokens: dict[str, str] | None = None, model_max_length: int | None = None,
                 options: dict | None = None):
        self.backend, self.style, self.options = backend, style, dict(options or {})
        if special_tokens is None:
            special_tokens = _guess_roles(backend)
        self.special_tokens = dict(special_tokens)
        default_max = STYLES[style].model_max_length if style in STYLES else 512
        self.model_max_length = model_max_length or default_max
        added = backend.get_added_tokens_decoder()  # id -> AddedToken
        numbered = [(int(m.group(1)), i) for i, t in added.items() if (m := _SENTINEL.match(t.content))]
        self.sentinel_ids = [i for _, i in sorted(numbered)]  # <extra_id_0> first
        self.special_ids = {}
        for role, token in self.special_tokens.items():
            if (i := backend.token_to_id(token)) is not None:
                self.special_ids[role] = i
        for i, t in sorted(added.items()):  # other special tokens, keyed by their text
            if t.special and i not in self.special_ids.values() and i not in self.sentinel_ids:
                self.special_ids[t.content] = i
        for role in ROLES:
            setattr(self, f"{role}_id", self.special_ids.get(role))

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included (the embedding table needs at least this)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: list[str], add_special_tokens: bool = False) -> list[list[int]]:
        """Encode many texts in parallel (Rust threads); no special tokens by default."""
        encodings = self.backend.encode_batch_fast(list(texts), add_special_tokens=add_special_tokens)
        return [e.ids for e in encodings]

    def encode_pair(self, a: str, b: str, add_special_tokens: bool = True) -> tuple[list[int], list[int]]:
        """(ids, token_type_ids) of a text pair, wrapped as the style does (BERT: [CLS] a [SEP] b [SEP])."""
        e = self.backend.encode(a, b, add_special_tokens=add_special_tokens)
        return e.ids, e.type_ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def tokenize(self, text: str) -> list[str]:
        return self.backend.encode(text, add_special_tokens=False).tokens

    def id_to_token(self, i: int) -> str | None:
        return self.backend.id_to_token(int(i))

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.backend.id_to_token(int(i)) for i in ids]

    def fingerprint(self) -> str:
        """sha256 of the serialised tokenizer: the cache key of anything tokenized with it."""
        return hashlib.sha256(self.backend.to_str().encode()).hexdigest()

    def save(self, directory: str | os.PathLike) -> None:
        """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        named = {f"{r}_token": t for r, t in self.special_tokens.items() if r in ROLES}
        extra = [t for r, t in self.special_tokens.items() if r not in ROLES and t not in named.values()]
        extra += [self.id_to_token(i) for i in self.sentinel_ids]
        spec = STYLES.get(self.style, Style("", {}, None))
        config = {
            "tokenizer_class": spec.hf_class,
            "model_max_length": self.model_max_length,
            **named,
            "additional_special_tokens": extra,
            "clean_up_tokenization_spaces": False,
            # Family classes (BertTokenizer ...) rebuild their pipeline from these flags.
            **{key: self.options[opt] for key, opt in spec.hf_options.items() if opt in self.options},
            "plmlab": {"style": self.style, "special_tokens": self.special_tokens, "options": self.options},
        }
        if self.style == "t5":
            config["extra_ids"] = len(self.sentinel_ids)
        write_text_atomic(folder / "tokenizer.json", self.backend.to_str(pretty=True))
        write_text_atomic(folder / "tokenizer_config.json", _json(config))
        special_map = {**named, "additional_special_tokens": extra}
        write_text_atomic(folder / "special_tokens_map.json", _json(special_map))

    def __repr__(self) -> str:
        return f"Tokenizer(style={self.style!r}, vocab_size={self.vocab_size})"


def train_tokenizer(texts: Iterable[str], style: str, vocab_size: int = DEFAULT_VOCAB_SIZE,
                    **options) -> Tokenizer:
    """Train a tokenizer of ``style`` on ``texts`` (deterministic for the same input).

    ``vocab_size`` counts every id (specials and, for T5, the sentinels). Options: ``lowercase``,
    ``strip_accents`` (bert); ``lowercase``, ``keep_accents`` (albert); ``add_prefix_space``
    (gpt2, llama, roberta, glm); ``extra_ids`` (t5); ``min_frequency`` (all, default 2).
    """
    spec = _style(style)
    unknown = set(options) - set(spec.options) - {"min_frequency"}
    if unknown:
        raise PlmlabError(f"unknown option(s) for style {style!r}: {', '.join(sorted(unknown))}")
    opts = {**spec.options, **options}
    n_model = vocab_size - opts.get("extra_ids", 0)  # T5 sentinels are added after training
    if n_model < len(set(spec.specials.values())) + 2:
        raise PlmlabError(f"vocab_size {vocab_size} is too small for style {style!r}")
    backend = _BUILDERS[spec.algorithm](spec, n_model, opts, texts)
    if opts.get("extra_ids"):
        # Added after the learned pieces, <extra_id_99> first: <extra_id_0> gets the last id.
        sentinels = [_special(f"<extra_id_{i}>") for i in reversed(range(opts["extra_ids"]))]
        backend.add_special_tokens(sentinels)
    backend.post_processor = _post_processor(spec, backend, opts)
    return Tokenizer(backend, style, dict(spec.specials), spec.model_max_length, opts)


def _style(style: str) -> Style:
    if style not in STYLES:
        raise PlmlabError(f"unknown tokenizer style {style!r}; choose one of {', '.join(STYLES)}")
    return STYLES[style]


def _special(token: str, lstrip: bool = False) -> AddedToken:
    return AddedToken(token, special=True, normalized=False, lstrip=lstrip)


def _specials(spec: Style) -> list[AddedToken]:
    unique = dict.fromkeys(spec.specials.values())  # roles may share a token; keep first-use order
    return [_special(t, lstrip=t in spec.lstrip) for t in unique]


def _byte_level_bpe(spec: Style, vocab_size: int, opts: dict, texts: Iterable[str]) -> hf.Tokenizer:
    backend = hf.Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=opts["add_prefix_space"])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=opts.get("min_frequency", 2), show_progress=False,
        special_tokens=_specials(spec), initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts, trainer=trainer)
    return backend


_PUA = 0xF0000  # Unicode supplementary private use planes 15-16: stand-ins for "##c" symbols


def _wordpiece(spec: Style, vocab_size: int, opts: dict, texts: Iterable[str]) -> hf.Tokenizer:
    """WordPiece vocabulary learned as HF's WordPieceTrainer does (BPE merges where a word's
    non-initial characters are "##c" symbols; every character also kept bare), but deterministic.

    HF numbers the "##c" symbols in hash-map order, so merges with tied counts break ties
    differently from run to run (measured: a different vocabulary on every run). Plain BPE is
    deterministic, so each continuation character is remapped to its own private-use character,
    BPE is trained on the remapped words, and the learned tokens are mapped back to "##..."."""
    unk = spec.specials["unk"]
    backend = hf.Tokenizer(models.WordPiece(unk_token=unk, max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=opts["strip_accents"],
        lowercase=opts["lowercase"])
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
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
        special_tokens=_specials(spec), initial_alphabet=alphabet))
    back = {v: k for k, v in cont.items()}
    vocab: dict[str, int] = {}
    for token, _ in sorted(helper.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1]):
        text = "".join(back.get(c, c) for c in token)
        vocab.setdefault("##" + text if token[0] in back else text, len(vocab))
    backend.model = models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100)
    backend.add_special_tokens(_specials(spec))
    return backend


def _unigram(spec: Style, vocab_size: int, opts: dict, texts: Iterable[str]) -> hf.Tokenizer:
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
        vocab_size=vocab_size, show_progress=False, special_tokens=_specials(spec),
        unk_token=spec.specials["unk"], max_piece_length=16)
    backend.train_from_iterator(texts, trainer=trainer)
    n_special = len(_specials(spec))
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


_BUILDERS = {"bpe": _byte_level_bpe, "wordpiece": _wordpiece, "unigram": _unigram}


def _post_processor(spec: Style, backend: hf.Tokenizer, opts: dict):
    ids = {t: backend.token_to_id(t) for t in spec.specials.values()}
    if spec.template is None:  # GPT-2: nothing added; ByteLevel only fixes offsets
        return processors.ByteLevel(trim_offsets=False)
    if spec.template[0] == "roberta":
        sep, cls = spec.specials["sep"], spec.specials["cls"]
        return processors.RobertaProcessing((sep, ids[sep]), (cls, ids[cls]), trim_offsets=True,
                                            add_prefix_space=opts["add_prefix_space"])
    single, pair = spec.template
    used = {piece.split(":")[0] for piece in f"{single} {pair}".split()} - {"$A", "$B"}
    return processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(t, ids[t]) for t in ids if t in used])


def _guess_roles(backend: hf.Tokenizer) -> dict[str, str]:
    """Roles from well-known token strings, for a tokenizer.json that came without a config."""
    known = {"pad": ["[PAD]", "<pad>"], "unk": ["[UNK]", "<unk>"], "cls": ["[CLS]"], "sep": ["[SEP]"],
             "mask": ["[MASK]", "<mask>"], "bos": ["<s>", "<|begin_of_text|>", _EOT],
             "eos": ["</s>", "<|end_of_text|>", _EOT]}
    roles = {}
    for role, candidates in known.items():
        found = [t for t in candidates if backend.token_to_id(t) is not None]
        if found:
            roles[role] = found[0]
    return roles


def _json(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


# ---------------------------------------------------------------- loading


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a directory written by :meth:`Tokenizer.save` or by transformers (``tokenizer.json``
    plus optional config files), a bare ``tokenizer.json``, or a BERT ``vocab.txt``-only folder."""
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        return Tokenizer(_read_backend(path))
    if not path.is_dir():
        raise PlmlabError(f"tokenizer path not found: {path}")
    config = _read_json(path / "tokenizer_config.json")
    if (path / "tokenizer.json").is_file():
        backend = _read_backend(path / "tokenizer.json")
    elif (path / "vocab.txt").is_file():
        backend = _wordpiece_from_vocab(path / "vocab.txt", config)
        config = {"tokenizer_class": "BertTokenizerFast", "do_lower_case": True, **config}
    else:
        raise PlmlabError(f"no tokenizer.json or vocab.txt in {path}")
    style, roles = _style_and_roles(config, _read_json(path / "special_tokens_map.json"), backend)
    ours = config.get("plmlab") if isinstance(config.get("plmlab"), dict) else {}
    options = ours.get("options")
    if not isinstance(options, dict):  # a transformers directory: read the family's flags
        hf_options = STYLES[style].hf_options if style in STYLES else {}
        options = {opt: config[key] for key, opt in hf_options.items() if key in config}
    max_len = config.get("model_max_length")
    max_len = max_len if isinstance(max_len, int) and 0 < max_len < 10**9 else None  # 1e30: "no limit"
    if isinstance(ours.get("style"), str) and style in STYLES:
        _current_template(backend, style, options, path)
    return Tokenizer(backend, style, roles, max_len, options)


def _current_template(backend: hf.Tokenizer, style: str, options: dict, where: Path) -> None:
    """Give a tokenizer saved by an older plmlab today's template for its style, with a warning
    (GLM's used to end every encoded prompt with <|endoftext|>): what `encode` adds must not
    depend on when the directory was written. Saving it again updates the directory."""
    from plmlab.data.files import warn

    spec = STYLES[style]
    try:
        expected = _post_processor(spec, backend, {**spec.options, **options})
    except (KeyError, TypeError, ValueError):  # specials missing: not ours to repair
        return
    current = backend.post_processor
    if current is not None and current.__getstate__() == expected.__getstate__():
        return
    backend.post_processor = expected
    warn(f"{where}: this {style} tokenizer was saved by an older plmlab and adds other special tokens "
         "than plmlab does today; using today's (save it again to update the directory)")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise PlmlabError(f"{path}: not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise PlmlabError(f"{path}: expected a JSON object")
    return data


def _read_backend(path: Path) -> hf.Tokenizer:
    try:
        return hf.Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises plain Exception for any parse error
        reason = (str(e).splitlines() or ["unreadable"])[0]
        raise PlmlabError(f"{path}: not a valid tokenizer.json ({reason})") from None


def _token_text(value) -> str | None:
    if isinstance(value, dict):  # transformers may serialise an AddedToken as a dict
        value = value.get("content")
    return value if isinstance(value, str) else None


def _style_and_roles(config: dict, special_map: dict, backend: hf.Tokenizer) -> tuple[str, dict[str, str]]:
    ours = config.get("plmlab") if isinstance(config.get("plmlab"), dict) else {}
    roles = ours.get("special_tokens") if isinstance(ours.get("special_tokens"), dict) else None
    if roles is None:
        roles = _guess_roles(backend)
        for role in ROLES:
            text = _token_text(config.get(f"{role}_token", special_map.get(f"{role}_token")))
            if text is not None:
                roles[role] = text
            elif f"{role}_token" in config:  # explicitly null in the config
                roles.pop(role, None)
    style = ours.get("style")
    if not isinstance(style, str):
        cls = str(config.get("tokenizer_class", "")).lower()
        known = ("roberta", "albert", "bert", "gpt2", "llama", "t5")  # "roberta" before "bert"
        style = next((s for s in known if cls.startswith(s)), "custom")
    return style, {r: t for r, t in roles.items() if isinstance(t, str)}


def _wordpiece_from_vocab(vocab_file: Path, config: dict) -> hf.Tokenizer:
    """Build BERT's tokenizer from vocab.txt the way transformers' BertTokenizerFast does."""
    try:
        vocab = models.WordPiece.read_file(str(vocab_file))
    except Exception as e:
        raise PlmlabError(f"{vocab_file}: cannot read vocabulary ({str(e).splitlines()[0]})") from None
    tokens = {r: _token_text(config.get(f"{r}_token")) or d for r, d in STYLES["bert"].specials.items()}
    if tokens["unk"] not in vocab:
        raise PlmlabError(f"{vocab_file}: the unknown token {tokens['unk']!r} is not in the vocabulary")
    backend = hf.Tokenizer(models.WordPiece(vocab, unk_token=tokens["unk"], max_input_chars_per_word=100))
    lower = config.get("do_lower_case", True)
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=config.get("tokenize_chinese_chars", True),
        strip_accents=config.get("strip_accents"), lowercase=lower)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    backend.add_special_tokens([_special(t) for t in tokens.values() if t in vocab])
    cls, sep = tokens["cls"], tokens["sep"]
    if cls in vocab and sep in vocab:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])
    return backend


# ---------------------------------------------------------------- built-in tokenizers


def builtin_tokenizer(style: str, vocab_size: int | None = None) -> Tokenizer:
    """A ``style`` tokenizer trained on the whole built-in corpus (each style trains in a few
    seconds on 2 cores), cached under ``cache_dir()/tokenizers/<style>-<vocab>-<key>/``, where
    the key hashes the corpus, the ``tokenizers`` version, ``TRAINING_VERSION`` and the style's
    definition (its specials and template: a tokenizer cached before a style changed what encode
    adds is never reused). A cached entry that does not load as that style is retrained, with a
    warning; a cache that cannot be written (full, read-only) only costs the caching."""
    from plmlab.data import builtin_documents, cache_dir, corpus_fingerprint
    from plmlab.data.files import remove_entry, warn

    spec = _style(style)
    vocab_size = vocab_size or DEFAULT_VOCAB_SIZE
    docs = builtin_documents()
    key = f"{corpus_fingerprint(docs)} {hf.__version__} {TRAINING_VERSION} {spec!r}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    folder = cache_dir() / "tokenizers" / f"{style}-{vocab_size}-{digest}"
    if os.path.lexists(folder):
        try:
            return _cached_tokenizer(folder, style)
        except (PlmlabError, OSError) as e:
            warn(f"cached tokenizer {folder} is damaged ({e}); training it again")
            remove_entry(folder)
    tokenizer = train_tokenizer((s for doc in docs for s in doc), style, vocab_size)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tokenizer.save(tmp)
        try:
            os.rename(tmp, folder)  # atomic: a killed run leaves no half-written tokenizer
        except OSError:  # another process saved the same tokenizer first
            remove_entry(tmp)
    except OSError as e:
        remove_entry(tmp)
        warn(f"cannot cache the built-in {style} tokenizer under {folder.parent} ({e.strerror or e}); "
             "it will be trained again next time")
        return tokenizer
    return load_tokenizer(folder)  # what every later run will load


def _cached_tokenizer(folder: Path, style: str) -> Tokenizer:
    """A cached built-in tokenizer, if it is one: real files only (a planted symlink must not
    make plmlab read elsewhere), loading as ``style`` with that style's special tokens."""
    from plmlab.data.files import is_plain_folder

    if not is_plain_folder(folder):
        raise PlmlabError("not a folder")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if not (folder / name).is_file() or (folder / name).is_symlink():
            raise PlmlabError(f"{name} is missing or not a regular file")
    ours = _read_json(folder / "tokenizer_config.json").get("plmlab")
    if not isinstance(ours, dict) or ours.get("style") != style or ours.get("special_tokens") != STYLES[style].specials:
        raise PlmlabError(f"it is not a {style} tokenizer")
    return load_tokenizer(folder)


TRAINING_VERSION = 1  # bump when a style's training recipe changes: invalidates cached tokenizers
