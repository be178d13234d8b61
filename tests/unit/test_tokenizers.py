"""Tests for plmlab.tokenizers: training per style, special-token layout, save/load, and parity
with transformers (which loads the saved directory and must give the same ids)."""

import json
import random
import time

import pytest

from plmlab.errors import PlmlabError
from plmlab.tokenizers import STYLES, Tokenizer, builtin_tokenizer, load_tokenizer, train_tokenizer

WORDS = (
    "the a model learns language from text and predicts next word while masked tokens are hidden "
    "encoder decoder attention layer training data corpus sentence CAPITAL Mixed café naïve résumé "
    "über Ångström 2024 3.14 don't it's (parens) [brackets] e-mail"
).split()
CJK = ["你好，世界。", "我们学习语言模型。", "日本語のテキストです。", "한국어 문장입니다."]


def corpus(n=400, seed=0):
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) + rng.choice(".!?") for _ in range(n)]
    return texts + CJK * 10


PROBES = [
    "Hello world, the café is open.",
    "  leading spaces  and   runs of\tspaces ",
    "你好世界 mixed 中文 text.",
    "Ünïcödé ÀÉÎ Ångström naïve",
    "special strings: <|endoftext|> </s> <s> [MASK] <mask> [CLS] <pad>",
    "sentinel <extra_id_0> and <extra_id_7>.",
    "unseen: zebra quokka 🙂",
    "",
]
PAIRS = [(PROBES[0], PROBES[2]), ("short a", "short b"), (PROBES[3], PROBES[4])]
SIZES = {"t5": 500}  # T5's vocab_size counts its 100 sentinels


@pytest.fixture(scope="module")
def trained():
    return {style: train_tokenizer(corpus(), style, SIZES.get(style, 400)) for style in STYLES}


# ---------------------------------------------------------------- special-token layout


EXPECTED_SPECIALS = {
    "gpt2": {"bos": 0, "eos": 0, "unk": 0},
    "llama": {"unk": 0, "bos": 1, "eos": 2},
    "bert": {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4},
    "roberta": {"bos": 0, "cls": 0, "pad": 1, "eos": 2, "sep": 2, "unk": 3, "mask": 4},
    "bart": {"bos": 0, "cls": 0, "pad": 1, "eos": 2, "sep": 2, "unk": 3, "mask": 399},  # <mask> last (400 ids)
    "albert": {"pad": 0, "unk": 1, "cls": 2, "bos": 2, "sep": 3, "eos": 3, "mask": 4},
    "t5": {"pad": 0, "eos": 1, "unk": 2},
    "glm": {"eos": 0, "pad": 0, "mask": 1, "smask": 2, "gmask": 3, "sop": 4, "eop": 5, "cls": 6, "unk": 7},
}


@pytest.mark.parametrize("style", STYLES)
def test_special_ids(trained, style):
    tok = trained[style]
    assert tok.special_ids == EXPECTED_SPECIALS[style]
    for role in ("pad", "bos", "eos", "unk", "mask", "cls", "sep"):
        assert getattr(tok, f"{role}_id") == EXPECTED_SPECIALS[style].get(role)
    # a special token's text maps to its single id, and plain text never yields a special id
    for role, token in tok.special_tokens.items():
        assert tok.encode(token, add_special_tokens=False) == [tok.special_ids[role]]
    special = set(tok.special_ids.values()) - {tok.unk_id}
    assert not special & set(tok.encode_batch([PROBES[0], PROBES[3]])[0])


@pytest.mark.parametrize(
    "style, text, wrap",
    [
        ("gpt2", "a b", lambda ids, s: ids),
        ("llama", "a b", lambda ids, s: [s["bos"]] + ids),
        ("bert", "a b", lambda ids, s: [s["cls"]] + ids + [s["sep"]]),
        ("roberta", "a b", lambda ids, s: [s["cls"]] + ids + [s["sep"]]),
        ("albert", "a b", lambda ids, s: [s["cls"]] + ids + [s["sep"]]),
        ("t5", "a b", lambda ids, s: ids + [s["eos"]]),
        ("glm", "a b", lambda ids, s: [s["cls"]] + ids),  # no <|endoftext|>: a prompt must not end the document
    ],
)
def test_encode_adds_family_specials(trained, style, text, wrap):
    tok = trained[style]
    plain = tok.encode(text, add_special_tokens=False)
    assert tok.encode(text) == wrap(plain, tok.special_ids)


def test_t5_sentinels_at_the_end_counting_down(trained):
    tok = trained["t5"]
    assert 200 < tok.vocab_size <= 500  # a small corpus may not fill the requested vocabulary
    assert len(tok.sentinel_ids) == 100
    assert tok.sentinel_ids[0] == tok.token_to_id("<extra_id_0>") == tok.vocab_size - 1
    assert tok.sentinel_ids == list(range(tok.vocab_size - 1, tok.vocab_size - 101, -1))
    assert tok.encode("x <extra_id_0>", add_special_tokens=False)[-1] == tok.vocab_size - 1
    assert "<extra_id_0>" not in tok.special_ids  # sentinels are listed in sentinel_ids only


def test_pair_type_ids(trained):
    ids, types = trained["bert"].encode_pair("a b", "c")
    n_a = len(trained["bert"].encode("a b"))
    assert types == [0] * n_a + [1] * (len(ids) - n_a)
    ids, types = trained["roberta"].encode_pair("a", "b")
    sep, cls = trained["roberta"].sep_id, trained["roberta"].cls_id
    assert ids[0] == cls and ids.count(sep) == 3  # <s> A </s></s> B </s>


# ---------------------------------------------------------------- decoding, determinism, options


@pytest.mark.parametrize("style", ["gpt2", "llama", "roberta", "glm"])
def test_byte_level_decode_is_exact(trained, style):
    tok = trained[style]
    for text in PROBES[:4] + [PROBES[6]]:
        assert tok.decode(tok.encode(text)) == text


def test_bert_decode_lowercases(trained):
    tok = trained["bert"]
    assert tok.decode(tok.encode("The Model LEARNS language from text")) == "the model learns language from text"
    assert tok.tokenize("你好") == ["你", "好"]  # CJK characters are single tokens


def test_unigram_decode(trained):
    assert trained["albert"].decode(trained["albert"].encode("The Model  learns")) == "the model learns"
    assert trained["t5"].decode(trained["t5"].encode("The model learns")) == "The model learns"


@pytest.mark.parametrize("style", STYLES)
def test_training_is_deterministic(trained, style):
    again = train_tokenizer(corpus(), style, SIZES.get(style, 400))
    assert again.backend.to_str() == trained[style].backend.to_str()
    assert again.fingerprint() == trained[style].fingerprint()


def test_bad_style_options_and_size():
    with pytest.raises(PlmlabError, match="unknown tokenizer style 'xlnet'"):
        train_tokenizer(corpus(10), "xlnet", 100)
    with pytest.raises(PlmlabError, match="unknown option.*lowercase"):
        train_tokenizer(corpus(10), "gpt2", 300, lowercase=True)
    with pytest.raises(PlmlabError, match="too small"):
        train_tokenizer(corpus(10), "t5", 100)


def test_bert_options_change_normalisation():
    cased = train_tokenizer(corpus(), "bert", 400, lowercase=False)
    assert "CAPITAL" in cased.tokenize("CAPITAL") or cased.tokenize("CAPITAL")[0].startswith("C")
    assert cased.decode(cased.encode("Mixed model")) == "Mixed model"


# ---------------------------------------------------------------- save / load


@pytest.mark.parametrize("style", STYLES)
def test_save_load_round_trip(trained, tmp_path, style, capsys):
    tok = trained[style]
    tok.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    back = load_tokenizer(tmp_path)
    assert back.style == style and back.special_ids == tok.special_ids
    assert back.sentinel_ids == tok.sentinel_ids and back.options == tok.options
    assert back.model_max_length == tok.model_max_length
    for text in PROBES:
        assert back.encode(text) == tok.encode(text)
    assert capsys.readouterr().err == ""  # today's template: nothing to warn about


def test_load_errors(tmp_path):
    with pytest.raises(PlmlabError, match="no such tokenizer directory"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(PlmlabError, match="no tokenizer.json or vocab.txt"):
        load_tokenizer(tmp_path)


def test_a_run_directory_gives_its_final_tokenizer(tmp_path):
    """--tokenizer takes what --model takes: a training run directory means its final/."""
    tok = train_tokenizer(corpus(), "gpt2", 300)
    tok.save(tmp_path / "run" / "final")
    assert load_tokenizer(tmp_path / "run").encode("the cat") == tok.encode("the cat")
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE", "vocab": ')
    with pytest.raises(PlmlabError, match="tokenizer.json: not a valid tokenizer.json") as info:
        load_tokenizer(tmp_path)
    assert "\n" not in str(info.value)
    (tmp_path / "tokenizer.json").write_text("[1, 2]")
    with pytest.raises(PlmlabError, match="not a valid tokenizer.json"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{oops")
    with pytest.raises(PlmlabError, match="tokenizer_config.json: not valid JSON"):
        load_tokenizer(tmp_path)


def test_load_bare_tokenizer_json_guesses_roles(trained, tmp_path):
    trained["bert"].save(tmp_path)
    tok = load_tokenizer(tmp_path / "tokenizer.json")
    assert tok.special_ids == EXPECTED_SPECIALS["bert"] and tok.style == "custom"


def _write_vocab(tokenizer: Tokenizer, folder, config=None):
    folder.mkdir(exist_ok=True)
    vocab = [tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))


def test_vocab_txt_only(trained, tmp_path):
    _write_vocab(trained["bert"], tmp_path)
    tok = load_tokenizer(tmp_path)
    assert tok.style == "bert" and tok.special_ids == EXPECTED_SPECIALS["bert"]
    for text in PROBES:
        assert tok.encode(text) == trained["bert"].encode(text)
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    with pytest.raises(PlmlabError, match="unknown token"):
        load_tokenizer(tmp_path)


# ---------------------------------------------------------------- parity with transformers


def _assert_same_ids(tok: Tokenizer, hf_tok, pairs=True):
    for text in PROBES:
        assert hf_tok(text)["input_ids"] == tok.encode(text), text
        assert hf_tok(text, add_special_tokens=False)["input_ids"] == tok.encode(text, add_special_tokens=False)
    if pairs:
        for a, b in PAIRS:
            out = hf_tok(a, b, return_token_type_ids=True)
            ids, types = tok.encode_pair(a, b)
            assert out["input_ids"] == ids and out["token_type_ids"] == types, (a, b)


@pytest.mark.parametrize("style", STYLES)
def test_transformers_parity(trained, tmp_path, style):
    transformers = pytest.importorskip("transformers")
    tok = trained[style]
    tok.save(tmp_path)
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    _assert_same_ids(tok, auto, pairs=style in ("bert", "roberta", "albert"))
    _assert_same_ids(tok, fast, pairs=False)
    for role, i in tok.special_ids.items():
        if role in ("pad", "bos", "eos", "unk", "mask", "cls", "sep"):
            assert getattr(auto, f"{role}_token_id") == i, role
    assert len(auto) == tok.vocab_size
    text = PROBES[0]
    assert auto.decode(auto(text)["input_ids"], skip_special_tokens=True) == tok.decode(tok.encode(text))


@pytest.mark.parametrize(
    "style, options",
    [("bert", {"lowercase": False}), ("bert", {"strip_accents": True}), ("albert", {"keep_accents": True}),
     ("albert", {"lowercase": False}), ("roberta", {"add_prefix_space": True}), ("gpt2", {"add_prefix_space": True})],
)
def test_transformers_parity_with_options(tmp_path, style, options):
    transformers = pytest.importorskip("transformers")
    tok = train_tokenizer(corpus(200), style, 300, **options)
    tok.save(tmp_path)
    _assert_same_ids(tok, transformers.AutoTokenizer.from_pretrained(tmp_path), pairs=style != "gpt2")


@pytest.mark.parametrize("config", [None, {"do_lower_case": False}, {"strip_accents": False}])
def test_vocab_txt_parity(trained, tmp_path, config):
    transformers = pytest.importorskip("transformers")
    _write_vocab(trained["bert"], tmp_path, config)
    # BertTokenizerFast.from_pretrained builds its WordPiece pipeline from vocab.txt (no tokenizer.json)
    _assert_same_ids(load_tokenizer(tmp_path), transformers.BertTokenizerFast.from_pretrained(tmp_path))


# ---------------------------------------------------------------- built-in tokenizers


def test_builtin_tokenizer_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PLMLAB_CACHE", str(tmp_path))
    first = builtin_tokenizer("gpt2")  # the fastest style to train; all share this code path
    assert first.vocab_size == 8192 and first.eos_id == 0
    (folder,) = (tmp_path / "tokenizers").iterdir()
    assert folder.name.startswith("gpt2-8192-")
    start = time.perf_counter()
    second = builtin_tokenizer("gpt2")
    assert time.perf_counter() - start < 1.0  # loaded, not retrained (the corpus is memoised)
    assert second.fingerprint() == first.fingerprint() and second.special_ids == first.special_ids
    with pytest.raises(PlmlabError, match="unknown tokenizer style"):
        builtin_tokenizer("nope")
