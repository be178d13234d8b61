"""BART's tokenizer style: RoBERTa's byte-level BPE and specials (<s>=0 <pad>=1 </s>=2 <unk>=3) but
<mask> the last id, as fairseq / transformers BART (bart-base: 50265 ids, <mask>=50264); the
saved directory loads in transformers' BartTokenizerFast / AutoTokenizer with the same ids, and
RoBERTa's style is unchanged (<mask>=4)."""

from __future__ import annotations

import pytest

from plmlab.cli import main
from plmlab.tokenizers import STYLES, builtin_tokenizer, load_tokenizer, train_tokenizer

TEXTS = ["BART reads a corrupted document and writes the original.", "The encoder sees <mask> spans.",
         "Sentence permutation shuffles the sentences of a document."] * 8
PROBES = ["Hello <mask> world.", "The encoder<mask> sees spans", "unseen: zebra quokka"]


def _transformers():
    return pytest.importorskip("transformers", reason="transformers (the test extra) is the oracle")


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, "bart", vocab_size=300, min_frequency=1)


def test_mask_is_the_last_id_and_the_others_are_roberta_s(tok):
    assert tok.vocab_size == 300 and tok.mask_id == 299 and tok.id_to_token(299) == "<mask>"
    assert {r: tok.special_ids[r] for r in ("bos", "pad", "eos", "unk")} == {"bos": 0, "pad": 1, "eos": 2, "unk": 3}
    roberta = train_tokenizer(TEXTS, "roberta", vocab_size=300, min_frequency=1)
    assert roberta.mask_id == 4  # RoBERTa's layout is not BART's
    assert "last" not in repr(STYLES["roberta"])  # the built-in cache key of every other style is unchanged
    assert builtin_tokenizer("bart", 2048).mask_id == 2047


@pytest.mark.parametrize("loader", ["BartTokenizerFast", "AutoTokenizer"])
def test_transformers_loads_the_saved_directory_with_the_same_ids(tok, tmp_path, loader):
    tok.save(tmp_path)
    theirs = getattr(_transformers(), loader).from_pretrained(str(tmp_path))
    assert theirs.mask_token_id == tok.mask_id == len(theirs) - 1
    assert (theirs.bos_token_id, theirs.pad_token_id, theirs.eos_token_id, theirs.unk_token_id) == (0, 1, 2, 3)
    for text in PROBES:
        assert theirs(text)["input_ids"] == tok.encode(text)
    assert theirs(PROBES[0], PROBES[1])["input_ids"] == tok.encode_pair(PROBES[0], PROBES[1])[0]


def test_a_transformers_bart_directory_loads_as_the_bart_style(tok, tmp_path):
    tok.save(tmp_path / "ours")
    _transformers().BartTokenizerFast.from_pretrained(str(tmp_path / "ours")).save_pretrained(str(tmp_path / "hf"))
    back = load_tokenizer(tmp_path / "hf")
    assert back.style == "bart" and back.mask_id == tok.mask_id
    assert [back.encode(t) for t in PROBES] == [tok.encode(t) for t in PROBES]


def test_tokenizer_train_style_bart(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(TEXTS) + "\n")
    assert main(["tokenizer", "train", "--style", "bart", "--corpus", str(corpus), "--vocab-size", "280",
                 "--out", str(tmp_path / "tok")]) == 0
    assert "trained a bart tokenizer" in capsys.readouterr().out
    back = load_tokenizer(tmp_path / "tok")
    assert back.style == "bart" and back.mask_id == back.vocab_size - 1
