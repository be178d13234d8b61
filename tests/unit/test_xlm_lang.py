"""XLM's CLM and MLM with language embeddings (Lample & Conneau 2019, sections 3.1-3.2) on a tiny
two-language corpus: each document's language travels from the JSONL "lang" field (or a
`lang:NAME=PATH` text file) through the token cache and packing into `language_ids`; the bad
inputs are one line; pretraining saves a `final/` that transformers' XLMWithLMHeadModel loads
with the same logits; `generate --lang` decodes as HF XLM fed `langs` step by step."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import plmlab
from plmlab.cli import main
from plmlab.data import build_token_data, read_corpus, read_corpus_with_languages
from plmlab.errors import PlmlabError
from plmlab.objectives import example_rng, get_objective
from plmlab.tokenizers import train_tokenizer

EN = ["The cat sleeps on the mat.", "The dog runs in the park.", "A child reads a book.", "The tree is tall."]
FR = ["Le chat dort sur le tapis.", "Le chien court dans le parc.", "Un enfant lit un livre.", "L'arbre est grand."]


def write_corpus(path, n=16, records=None):
    """n English and n French documents, alternating, three sentences each."""
    lines = records or [{"text": " ".join(texts[(i + k) % 4] for k in range(3)), "lang": lang}
                        for i in range(n) for texts, lang in ((EN, "en"), (FR, "fr"))]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("xlmlang")
    documents, languages = read_corpus_with_languages([str(write_corpus(folder / "c.jsonl", n=6))])
    tok = train_tokenizer([s for d in documents for s in d], "roberta", vocab_size=200, min_frequency=1)
    train, _ = build_token_data(documents, tok, cache_dir=folder / "cache", val_fraction=0.0, languages=languages)
    return folder, documents, languages, tok, train


def token_languages(data, names):
    """Each token's document's language id, the slow way: document by document."""
    ids = [names.index(data.languages[data.doc_languages[d]]) for d in range(data.n_docs)]
    return [ids[d] for d in range(data.n_docs) for _ in range(len(data.document(d)))]


def test_corpus_languages_from_records_and_text_files(tmp_path):
    write_corpus(tmp_path / "c.jsonl", records=[{"text": "The cat sleeps.", "lang": "en"}, {"text": "", "lang": "de"},
                                                {"text": "Le chat dort.", "lang": "fr"}])
    (tmp_path / "fr.txt").write_text("Le chien court.\n\nLa maison est grande.")
    docs, langs = read_corpus_with_languages([str(tmp_path / "c.jsonl"), f"lang:fr={tmp_path / 'fr.txt'}"])
    assert docs == [["The cat sleeps."], ["Le chat dort."], ["Le chien court.", "La maison est grande."]]
    assert langs == ["en", "fr", "fr"]  # the empty German record is skipped with its language
    assert read_corpus([str(tmp_path / "c.jsonl")]) == docs[:2]
    assert read_corpus_with_languages([str(tmp_path / "fr.txt")])[1] is None  # no languages named: none


@pytest.mark.parametrize("records, message", [
    ([{"text": "a b.", "lang": "en"}, {"text": "c d."}, {"text": "e f.", "lang": "fr"}],
     r'c.jsonl:2: no "lang" for this document, but the corpus names languages \(.*c.jsonl:1: \'en\'\)'),
    ([{"text": "a b.", "lang": "en"}, {"text": "c d.", "lang": 3}], 'c.jsonl:2: "lang" must be a string'),
    ([{"text": "a b.", "lang": "en us"}], "c.jsonl:1: a language must be one code without spaces"),
])
def test_bad_language_records_are_one_line(tmp_path, records, message):
    with pytest.raises(PlmlabError, match=message):
        read_corpus_with_languages([str(write_corpus(tmp_path / "c.jsonl", records=records))])


def test_text_file_without_language_in_a_corpus_with_languages(tmp_path):
    write_corpus(tmp_path / "c.jsonl", records=[{"text": "a b.", "lang": "en"}])
    (tmp_path / "x.txt").write_text("Le chat dort.")
    with pytest.raises(PlmlabError, match=r"x.txt: no \"lang\" .*--corpus-lang NAME=PATH"):
        read_corpus_with_languages([str(tmp_path / "c.jsonl"), str(tmp_path / "x.txt")])
    with pytest.raises(PlmlabError, match="is 'en', but the file is given as 'fr'"):
        read_corpus_with_languages([f"lang:fr={tmp_path / 'c.jsonl'}"])


def test_clm_language_ids_follow_documents_across_windows(corpus):
    _, _, _, tok, train = corpus
    clm = get_objective("clm")(tok, 24, languages=["fr", "en"])
    assert clm.num_examples(train) > 2 and clm.languages == ["fr", "en"]
    # the stream doc0 EOS doc1 EOS ...: each token (its EOS too) in its document's language
    per_doc = [token_languages(train, ["fr", "en"])[train.doc_offsets[d]] for d in range(train.n_docs)]
    stream = [lang for d in range(train.n_docs) for lang in [per_doc[d]] * (len(train.document(d)) + 1)]
    crossing = 0
    for index in range(clm.num_examples(train)):
        ex = clm.example(train, index, example_rng(0, 0, index))
        want = stream[index * 24 : index * 24 + 24]
        assert ex["language_ids"].tolist() == want and len(ex["input_ids"]) == 24
        crossing += len(set(want)) == 2
    assert crossing >= 2  # windows that span an English and a French document
    assert set(per_doc) == {0, 1}


def test_mlm_language_ids_follow_documents_in_full_sentences(corpus):
    _, _, _, tok, train = corpus
    mlm = get_objective("mlm")(tok, 64)
    n = mlm.num_examples(train)
    assert mlm.languages == ["en", "fr"]  # sorted names of the corpus
    langs = token_languages(train, ["en", "fr"])
    spanning = 0
    for index in range(n):
        ex = mlm.example(train, index, example_rng(0, 0, index))
        pieces = mlm.layout.plan(train)[index]
        got = ex["language_ids"].tolist()
        assert len(got) == len(ex["input_ids"])
        # <s> takes the first piece's language; a </s> separator / the final </s> the piece it closes
        want = [langs[pieces[0][0]]]
        for k, (s, e) in enumerate(pieces):
            want += ([langs[pieces[k - 1][0]]] if k else []) + langs[s:e]
        assert got == want + [langs[pieces[-1][0]]]
        spanning += len(set(got)) == 2
    assert spanning >= 2
    # the masking is MLM's own: the same seed gives the same mask with or without languages
    plain, _ = build_token_data(*read_corpus_with_languages([str(corpus[0] / "c.jsonl")])[:1], tok,
                                cache_dir=corpus[0] / "cache", val_fraction=0.0)
    again = get_objective("mlm")(tok, 64).example(plain, 1, example_rng(0, 0, 1))
    assert again["input_ids"].tolist() == mlm.example(train, 1, example_rng(0, 0, 1))["input_ids"].tolist()
    assert "language_ids" not in again


def test_pair_formats_refuse_languages(corpus):
    _, _, _, tok, train = corpus
    with pytest.raises(PlmlabError, match="needs a packed input format .* not segment-pair"):
        get_objective("mlm")(tok, 40, input_format="segment-pair").num_examples(train)


def test_cache_key_covers_languages_and_a_damaged_entry_is_rebuilt(tmp_path, corpus, capsys):
    _, documents, languages, tok, _ = corpus
    cache = tmp_path / "cache"
    a, _ = build_token_data(documents, tok, cache_dir=cache, val_fraction=0.0, languages=languages)
    (entry,) = cache.iterdir()
    swapped = ["fr" if x == "en" else "en" for x in languages]
    b, _ = build_token_data(documents, tok, cache_dir=cache, val_fraction=0.0, languages=swapped)
    build_token_data(documents, tok, cache_dir=cache, val_fraction=0.0)
    assert len(list(cache.iterdir())) == 3  # relabelled and unlabelled: three entries
    assert (a.tokens == b.tokens).all() and (a.doc_languages == 1 - b.doc_languages).all()
    langs = entry / "train" / "doc_langs.npy"
    langs.unlink()
    np.save(langs, np.full(a.n_docs, 5, dtype=np.int64))  # an id past the two languages
    again, _ = build_token_data(documents, tok, cache_dir=cache, val_fraction=0.0, languages=languages)
    assert "doc_langs.npy does not give each document a language" in capsys.readouterr().err
    assert (again.doc_languages == a.doc_languages).all()


# --- pretraining end to end, and what transformers makes of final/ -------------------------------
transformers = pytest.importorskip("transformers")
RUN = ["--preset", "xlm-tiny", "--max-steps", "2", "--batch-size", "2", "--seq-len", "32", "--vocab-size", "300",
       "--progress", "none", "--sample-tokens", "0"]


@pytest.fixture(scope="module")
def lang_corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("xlmrun") / "c.jsonl")


def hf_parity(final, causal: bool) -> None:
    """final/ loads in transformers as the XLM it says it is, with plmlab's logits given `langs`."""
    written = json.loads((final / "config.json").read_text())
    assert written["lang2id"] == {"en": 0, "fr": 1} and written["causal"] is causal
    hf = transformers.XLMWithLMHeadModel.from_pretrained(final).eval()
    ours = plmlab.load_pretrained(final)
    assert ours.config.languages == ["en", "fr"]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 300, (2, 9), generator=g)
    langs = torch.tensor([[0] * 4 + [1] * 5, [1] * 9])
    with torch.no_grad():
        want = hf(ids, langs=langs).logits
        torch.testing.assert_close(ours(ids, language_ids=langs).logits, want, atol=1e-4, rtol=1e-4)
        later = ids.clone()
        later[:, 6:] = 7  # a causal model's first six positions do not see the change
        moved = hf(later, langs=langs).logits
    assert torch.allclose(moved[:, :6], want[:, :6], atol=1e-5) == causal
    assert not torch.allclose(hf(ids, langs=1 - langs).logits, want)  # the languages count


@pytest.mark.parametrize("objective, extra", [("mlm", []), ("clm", ["--arch", "decoder"])])
def test_pretrain_round_trips_as_xlm(tmp_path, lang_corpus, objective, extra):
    out = tmp_path / objective
    assert main(["pretrain", *RUN, *extra, "--objective", objective, "--corpus", str(lang_corpus),
                 "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r][:2] == [1, 2]
    hf_parity(out / "final", causal=objective == "clm")


def test_clm_on_the_xlm_encoder_names_the_decoder(tmp_path, lang_corpus, capsys):
    assert main(["pretrain", *RUN, "--objective", "clm", "--corpus", str(lang_corpus), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "does not fit this model (an encoder)" in err and err.endswith("with --arch decoder")


def test_corpus_lang_text_files(tmp_path, capsys):
    (tmp_path / "en.txt").write_text("\n\n".join(" ".join(EN[(i + k) % 4] for k in range(3)) for i in range(12)))
    (tmp_path / "fr.txt").write_text("\n\n".join(" ".join(FR[(i + k) % 4] for k in range(3)) for i in range(12)))
    args = ["pretrain", *RUN, "--objective", "mlm", "--set", "max_positions=32", "--out", str(tmp_path / "run"),
            "--corpus-lang", f"fr={tmp_path / 'fr.txt'}", "--corpus-lang", f"en={tmp_path / 'en.txt'}"]
    assert main(args) == 0
    assert plmlab.load_pretrained(tmp_path / "run" / "final").config.languages == ["en", "fr"]
    assert main([*args[:-4], "--corpus-lang", "fr"]) == 2
    assert "expected NAME=PATH" in capsys.readouterr().err


@pytest.mark.parametrize("extra, records, message", [
    (["--objective-set", 'languages=["en","de"]'], None,
     r"unknown language 'fr': not one of the model's languages \(en, de\)"),
    (["--config", "{model}"], None, r"unknown language 'fr': not one of the model's languages \(de, en\)"),
    ([], [{"text": f"{EN[i % 4]} {EN[(i + 1) % 4]}", "lang": ["en", "fr", "de"][i % 3]} for i in range(30)],
     r"the corpus has 3 languages \(de, en, fr\), more than the model's n_languages=2"),
    ([], [{"text": f"{EN[i % 4]} {EN[(i + 1) % 4]}", **({"lang": "en"} if i != 4 else {})} for i in range(30)],
     'c.jsonl:5: no "lang" for this document'),
    ([], [{"text": f"{EN[i % 4]} {EN[(i + 1) % 4]}", "lang": 1 if i == 2 else "en"} for i in range(30)],
     'c.jsonl:3: "lang" must be a string'),
])
def test_bad_input_is_one_line(tmp_path, lang_corpus, capsys, extra, records, message):
    corpus = write_corpus(tmp_path / "c.jsonl", records=records) if records else lang_corpus
    (tmp_path / "model.json").write_text(json.dumps({"languages": ["de", "en"]}))  # the model's lang2id
    extra = [x.format(model=tmp_path / "model.json") for x in extra]
    assert main(["pretrain", *RUN, "--objective", "mlm", "--corpus", str(corpus), *extra,
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("plmlab: error: ") and re.search(message, err[0]), err


def test_objective_view_language_column(corpus, tmp_path, capsys):
    _, _, _, tok, _ = corpus
    tok.save(tmp_path)
    for name in ("clm", "mlm"):
        assert main(["objective", name, "--text", "Le chat dort.", "--lang", "fr", "--set", 'languages=["en","fr"]',
                     "--tokenizer", str(tmp_path), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["language_ids"] == [1] * len(out["input_ids"]) and out["languages"] == ["en", "fr"]
    assert main(["objective", "clm", "--text", "Le chat dort.", "--lang", "fr", "--tokenizer", str(tmp_path)]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.split()[-1] == "language"
    assert main(["objective", "tlm", "--text", "Le chat.", "--lang", "fr", "--tokenizer", str(tmp_path)]) == 2
    assert "--lang is for objectives" in capsys.readouterr().err


# --- generation with a language: HF XLM fed `langs`, one step at a time ----------------------------
@pytest.fixture(scope="module")
def causal_xlm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("causal-xlm")
    torch.manual_seed(0)
    cfg = transformers.XLMConfig(vocab_size=99, emb_dim=32, n_layers=2, n_heads=4, max_position_embeddings=32,
                                 dropout=0.0, attention_dropout=0.0, causal=True, n_langs=2, use_lang_emb=True,
                                 id2lang={0: "en", 1: "fr"}, lang2id={"en": 0, "fr": 1}, pad_token_id=2,
                                 bos_token_id=0, eos_token_id=1)
    hf = transformers.XLMWithLMHeadModel(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.3 * torch.randn_like(p))  # a random model with decided preferences
    hf.save_pretrained(folder)
    return folder, hf


def hf_greedy(hf, prompt: list[int], n: int, lang: int) -> list[int]:
    """Greedy tokens of HF XLM given `langs`, one full forward per step. (HF's own `generate` is not
    the reference: XLMWithLMHeadModel.prepare_inputs_for_generation appends a mask token and reads
    its logits, MLM-style, rather than the last token's.)"""
    ids = torch.tensor([prompt])
    for _ in range(n):
        with torch.no_grad():
            logits = hf(ids, langs=torch.full_like(ids, lang)).logits[:, -1]
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids[0, len(prompt):].tolist()


def test_generate_with_a_language_is_hf_xlm_with_langs(causal_xlm):
    folder, hf = causal_xlm
    model = plmlab.load_pretrained(folder)
    prompt = [5, 17, 42, 8]
    runs = {}
    for lang, name in ((0, "en"), (1, "fr")):
        want = hf_greedy(hf, prompt, 8, lang)
        got = plmlab.generate(model, torch.tensor([prompt]), max_new_tokens=8, eos_token_id=None, language=name)
        assert got[0].tolist() == want
        assert plmlab.generate(model, [prompt], max_new_tokens=8, eos_token_id=None, language=lang,
                               use_cache=False)[0].tolist() == want
        runs[name] = want
    assert runs["en"] != runs["fr"]  # the language changes what is generated
    with pytest.raises(PlmlabError, match=r"unknown language 'de' for this model \(its languages are en, fr"):
        plmlab.generate(model, [prompt], max_new_tokens=2, language="de")
    with pytest.raises(PlmlabError, match="no language embeddings"):
        plmlab.generate(plmlab.build_model("gpt-tiny"), [prompt], max_new_tokens=2, language=0)


def test_generate_cli_lang(causal_xlm, monkeypatch, capsys):
    from plmlab.cli import generate as cli_generate

    folder, hf = causal_xlm

    class Ids:  # a tokenizer of plain ids: "5 17 42 8"
        bos_id, eos_id, pad_id = 0, 1, 2

        def encode(self, text, add_special_tokens=False):
            return [int(t) for t in text.split()]

        def decode(self, ids):
            return " ".join(map(str, ids))

    monkeypatch.setattr(cli_generate, "load", lambda *a: (plmlab.load_pretrained(folder), Ids()))
    assert main(["generate", "--model", str(folder), "--prompt", "5 17 42 8", "--max-new-tokens", "6",
                 "--lang", "fr", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    want = hf_greedy(hf, [5, 17, 42, 8], 6, 1)
    assert result["ids"] == (want[:want.index(1) + 1] if 1 in want else want)
    assert main(["generate", "--model", str(folder), "--prompt", "5 17", "--lang", "xx"]) == 2
    assert "unknown language 'xx'" in capsys.readouterr().err
