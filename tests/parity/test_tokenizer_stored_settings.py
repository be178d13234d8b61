"""Tokenizer files as checkpoints publish them, against transformers' AutoTokenizer.

Each family's directory is written by transformers' own tokenizer class (its normalizer,
pre-tokenizer, post-processor and config files; BERT WordPiece, RoBERTa / GPT-2 byte-level BPE,
ALBERT / T5 unigram, LLaMA's Metaspace BPE with byte fallback), by the `tokenizers` API alone
(a LLaMA-3-style regex split + byte-level BPE under `PreTrainedTokenizerFast`), or by plmlab (GLM,
which transformers has no class for). Added tokens, special and not, are added the way users add
them. Then the tokenizer.json gets the padding and truncation that sentence-transformers stores
(all-MiniLM-L6-v2: fixed padding to 128, truncation at 128): transformers ignores both unless a
call asks for them, so plmlab's ids must be the text's ids, never padded or cut. Where
tokenizer_config.json's flags (do_lower_case, add_prefix_space ...) disagree with tokenizer.json,
transformers' family class follows the flags, and plmlab must too.
"""

from __future__ import annotations

import json

import pytest
import tokenizers as hf
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from plmlab.tokenizers import load_tokenizer, train_tokenizer

transformers = pytest.importorskip("transformers")

CORPUS = [
    "The café's naïve résumé lists Ångström units, 3.14 and 2024.",
    "Don't split e-mail addresses (or [brackets]) badly!",
    "A model learns language from text; it predicts the next word.",
    "你好，世界。我们学习语言模型。",
    "Encoder and decoder layers attend to every token in the sentence.",
    "CAPITAL letters, MiXeD case and UPPER words appear too.",
] * 20
TEXTS = [
    "Hello world, the café is open.",
    "Ünïcödé ÀÉÎ Ångström naïve résumé",
    "  leading spaces  and   runs of\tspaces and a newline\n",
    "pneumonoultramicroscopicsilicovolcanoconiosis is one long word",
    "你好世界 mixed 中文 text 🙂",
    "added tokens: plmlab_token and <ent> here",
    # longer than the stored truncation: transformers keeps every token
    "a long text that runs well past the stored truncation length " * 3,
    "",
]
PAIRS = [("How old are you?", "I am six years old."), (TEXTS[1], TEXTS[6])]
# What a tokenizer.json may store: sentence-transformers' fixed padding and truncation, or
# batch-longest padding to a multiple, on the left, with left truncation of the first text only.
STORED = {
    "fixed": (dict(length=24, direction="right"), dict(max_length=10, strategy="longest_first")),
    "longest": (dict(pad_to_multiple_of=8, direction="left"),
                dict(max_length=6, strategy="only_first", direction="left")),
}
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def _trained(model, trainer, pre_tokenizer, normalizer=None) -> dict:
    """The model section of a tokenizer trained on CORPUS (vocab, and merges for BPE)."""
    backend = hf.Tokenizer(model)
    backend.normalizer = normalizer
    backend.pre_tokenizer = pre_tokenizer
    backend.train_from_iterator(CORPUS, trainer=trainer)
    return json.loads(backend.to_str())["model"]


def _merges(model: dict) -> list[tuple[str, str]]:
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]


def _byte_level_bpe(specials: list[str]) -> dict:
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    return _trained(models.BPE(), trainer, pre_tokenizers.ByteLevel(add_prefix_space=False))


def _unigram(specials: list[str], normalizer=None) -> list[tuple[str, float]]:
    trainer = trainers.UnigramTrainer(vocab_size=250, special_tokens=specials, unk_token="<unk>",
                                      show_progress=False)
    model = _trained(models.Unigram(), trainer, pre_tokenizers.Metaspace(), normalizer)
    return [tuple(piece) for piece in model["vocab"]]


def bert():
    trainer = trainers.WordPieceTrainer(vocab_size=300, show_progress=False,
                                        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    model = _trained(models.WordPiece(unk_token="[UNK]"), trainer, pre_tokenizers.BertPreTokenizer(),
                     normalizers.BertNormalizer(lowercase=True))
    return transformers.BertTokenizer(vocab=model["vocab"], model_max_length=512)


def roberta():
    model = _byte_level_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    return transformers.RobertaTokenizer(vocab=model["vocab"], merges=_merges(model), model_max_length=514)


def gpt2():
    model = _byte_level_bpe(["<|endoftext|>"])
    return transformers.GPT2Tokenizer(vocab=model["vocab"], merges=_merges(model), add_prefix_space=True)


def albert():
    lower = normalizers.Sequence([normalizers.NFKD(), normalizers.StripAccents(), normalizers.Lowercase()])
    vocab = _unigram(["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"], lower)  # the ids AlbertTokenizer expects
    return transformers.AlbertTokenizer(vocab=vocab)


def t5():
    vocab = _unigram(["<pad>", "</s>", "<unk>"])
    sentinels = [(f"<extra_id_{i}>", 0.0) for i in reversed(range(3))]  # <extra_id_0> last, as T5's
    return transformers.T5Tokenizer(vocab=vocab + sentinels, extra_ids=3, model_max_length=512)


def llama():
    """LLaMA 1/2: SentencePiece BPE (Metaspace "▁", byte fallback to <0xNN> pieces)."""
    trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False)
    model = _trained(models.BPE(), trainer, pre_tokenizers.Metaspace(prepend_scheme="first", split=False))
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + list(model["vocab"])
    vocab = {p: i for i, p in enumerate(dict.fromkeys(pieces))}
    return transformers.LlamaTokenizer(vocab=vocab, merges=_merges(model), add_bos_token=True,
                                       model_max_length=2048)


def llama3():
    """LLaMA-3 / SmolLM style: no family class, the tokenizer.json is the whole pipeline."""
    backend = hf.Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(hf.Regex(LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, show_progress=False, special_tokens=["<|begin_of_text|>",
                                  "<|end_of_text|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS, trainer=trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
        special_tokens=[("<|begin_of_text|>", 0)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|begin_of_text|>",
                                                eos_token="<|end_of_text|>")


FAMILIES = {"bert": bert, "roberta": roberta, "gpt2": gpt2, "albert": albert, "t5": t5, "llama": llama,
            "llama3": llama3, "glm": None}


def published(family: str, folder) -> None:
    """Write `family`'s directory as a checkpoint ships it, with added tokens."""
    if family == "glm":  # plmlab's GLM style, saved by plmlab (PreTrainedTokenizerFast for transformers)
        tok = train_tokenizer(CORPUS, "glm", vocab_size=300)
        tok.backend.add_tokens(["plmlab_token"])
        tok.backend.add_special_tokens([hf.AddedToken("<ent>", special=True, normalized=False)])
        tok.save(folder)
        return
    tok = FAMILIES[family]()
    tok.add_tokens(["plmlab_token"])
    tok.add_tokens(["<ent>"], special_tokens=True)
    tok.save_pretrained(folder)


def store(folder, kind: str) -> None:
    """Give the directory's tokenizer.json stored padding and truncation (as the tokenizers API
    writes them), and check that the backend itself now pads and cuts."""
    path = folder / "tokenizer.json"
    backend = hf.Tokenizer.from_file(str(path))
    padding, truncation = STORED[kind]
    backend.enable_padding(pad_id=0, pad_token=backend.id_to_token(0), **padding)
    backend.enable_truncation(**truncation)
    backend.save(str(path), pretty=True)
    padded_to = padding.get("length") or padding["pad_to_multiple_of"]  # "longest": 6 ids, padded to 8
    assert len(hf.Tokenizer.from_file(str(path)).encode(TEXTS[6]).ids) == padded_to


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param


@pytest.mark.parametrize("kind", STORED)
def test_ids_equal_transformers(family, kind, tmp_path):
    published(family, tmp_path)
    store(tmp_path, kind)
    ours, auto = load_tokenizer(tmp_path), transformers.AutoTokenizer.from_pretrained(tmp_path)
    for text in TEXTS:
        assert ours.encode(text) == auto(text)["input_ids"], text
        assert ours.encode(text, add_special_tokens=False) == auto(text, add_special_tokens=False)["input_ids"]
    assert ours.encode_batch(TEXTS, add_special_tokens=True) == auto(TEXTS)["input_ids"]
    for a, b in PAIRS:
        ids, types = ours.encode_pair(a, b)
        expected = auto(a, b, return_token_type_ids=True)
        assert ids == expected["input_ids"], (a, b)
        if "token_type_ids" in auto.model_input_names:
            assert types == expected["token_type_ids"], (a, b)
    assert len(ours.encode(TEXTS[6])) > 24  # the stored truncation (and padding) did not apply


def test_model_max_length_is_transformers(family, tmp_path):
    """tokenizer_config.json's model_max_length, not the stored truncation's; none stays none."""
    published(family, tmp_path)
    store(tmp_path, "fixed")
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    expected = auto.model_max_length if auto.model_max_length < 10**9 else None  # 1e30: no limit
    assert load_tokenizer(tmp_path).model_max_length == expected


def test_save_writes_no_stored_settings_back(family, tmp_path):
    published(family, tmp_path / "published")
    store(tmp_path / "published", "fixed")
    ours = load_tokenizer(tmp_path / "published")
    ours.save(tmp_path / "saved")
    written = json.loads((tmp_path / "saved" / "tokenizer.json").read_text(encoding="utf-8"))
    assert written["padding"] is None and written["truncation"] is None
    again = load_tokenizer(tmp_path / "saved")
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path / "saved")
    assert again.model_max_length == ours.model_max_length
    for text in TEXTS:
        assert again.encode(text) == ours.encode(text) == auto(text)["input_ids"], text


@pytest.mark.parametrize("family, config, json_edit", [
    ("bert", {"do_lower_case": False}, None),  # the vocabulary is lowercase: capitals become [UNK]
    ("bert", {"do_lower_case": None}, ("normalizer", "lowercase", False)),  # absent flag: true
    ("bert", {"strip_accents": False}, None),
    ("bert", {"tokenize_chinese_chars": False}, None),
    ("roberta", {"add_prefix_space": True}, None),
    ("gpt2", {"add_prefix_space": None}, None),  # absent flag: false, the tokenizer.json says true
], ids=["bert-cased", "bert-absent-lowercase", "bert-accents", "bert-chinese", "roberta-prefix", "gpt2-absent-prefix"])
def test_config_flags_win_over_tokenizer_json(family, config, json_edit, tmp_path):
    """A directory whose tokenizer_config.json flags disagree with its tokenizer.json: transformers'
    family class follows the flags (or its defaults), and so does plmlab."""
    published(family, tmp_path)
    path = tmp_path / "tokenizer_config.json"
    written = json.loads(path.read_text(encoding="utf-8"))
    for key, value in config.items():
        if value is None:
            written.pop(key, None)  # the flag absent: the class's default applies
        else:
            written[key] = value
    path.write_text(json.dumps(written))
    if json_edit is not None:
        section, key, value = json_edit
        data = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
        data[section][key] = value
        (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    auto, as_stored = transformers.AutoTokenizer.from_pretrained(tmp_path), hf.Tokenizer.from_file(
        str(tmp_path / "tokenizer.json"))
    assert any(as_stored.encode(t).ids != auto(t)["input_ids"] for t in TEXTS)  # they do disagree
    ours = load_tokenizer(tmp_path)
    for text in TEXTS:
        assert ours.encode(text) == auto(text)["input_ids"], text
