"""`evaluate --task perplexity --data FILE` scores the file as written -- newlines, indentation, its
bytes -- and equals lm-eval's rolling log-likelihood on the same text and windows and a hand
computation with transformers: on a tiny random GPT-2 and on a real LLM (SmolLM2-135M-Instruct,
marked real_weights). Only the built-in corpus is re-joined from sentences, and the result says so."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
transformers = pytest.importorskip("transformers")
lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is an optional extra (plmlab[eval])")

import plmlab  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from plmlab.cli import main  # noqa: E402
from plmlab.errors import PlmlabError  # noqa: E402
from plmlab.evaluate import EvalOptions, run  # noqa: E402
from plmlab.evaluate.perplexity import evaluate_perplexity, start_token, windows  # noqa: E402
from plmlab.evaluate.text import AS_WRITTEN, JOINED, read_documents  # noqa: E402
from plmlab.tokenizers import train_tokenizer  # noqa: E402

# A markdown excerpt: headings, a list, an indented command, a code block, blank lines, digits and
# non-ASCII text -- what re-joining sentences with single spaces used to flatten.
MARKDOWN = """# Reading a corpus

plmlab reads text files, folders and JSONL. A folder is walked in sorted order, and hidden
files are skipped:

    plmlab pretrain --preset gpt-mini --corpus data/ --out runs/gpt --max-steps 2000

## Options

- `--max-steps N`: stop after N optimizer steps (default 2000).
- `--seq-len T`: tokens per row; 128 by default, at most the model's context.
- `--encoding-errors replace`: read a file with bad bytes anyway.

```python
def read(path):
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                yield number, line.rstrip("\\n")
```

Numbers such as 3.14, 2024-01-31 and 1,000,000 are split by the tokenizer, and so is
text like "naïve café" or 中文.

| flag | default |
| --- | --- |
| `--batch-size` | 16 |
| `--seed` | 0 |
"""


class _Request:  # what lm-eval hands a model: an object with .args
    def __init__(self, *args):
        self.args = args


@torch.no_grad()
def hand_nll(model, ids: list[int], prefix: int, length: int) -> float:
    """Total NLL of `ids` after `prefix` with transformers, one forward pass per block: the tokens
    in disjoint blocks of `length`, each block predicted by the `length` inputs that end just
    before its last token (fewer at the start of the text)."""
    full = [prefix] + ids  # full[t] predicts full[t + 1] = ids[t]
    total = 0.0
    for a in range(0, len(ids), length):
        b = min(a + length, len(ids))  # targets ids[a:b]
        s = max(0, b - length)  # inputs full[s:b]
        logp = model(input_ids=torch.tensor([full[s:b]])).logits[0].double().log_softmax(-1)  # (b - s, V)
        total -= sum(float(logp[t - s, full[t + 1]]) for t in range(a, b))
    return total


def rolling_nll(hf_model, hf_tokenizer, text: str, length: int, prefix: int) -> float:
    """lm-eval's own HF backend: -loglikelihood_rolling of `text` in windows of `length`."""
    lm = HFLM(pretrained=hf_model, tokenizer=hf_tokenizer, max_length=length, prefix_token_id=prefix,
              batch_size=4, logits_cache=False)
    (ll,) = lm.loglikelihood_rolling([_Request(text)])
    return -ll


# ----------------------------------------------------------------------------- reading the data
def test_a_text_file_is_one_document_byte_for_byte(tmp_path):
    written = "Title\r\n\n    indented line  \n\tTabbed, then blank lines\n\n\n"
    path = tmp_path / "doc.txt"
    path.write_bytes(b"\xef\xbb\xbf" + written.encode("utf-8"))  # a BOM marks the encoding: not text
    docs = read_documents(str(path))
    assert docs.texts == [written] and docs.sources == [str(path)] and docs.how == AS_WRITTEN


def test_jsonl_texts_as_they_are_and_a_folder_one_document_per_file(tmp_path):
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    records = [{"text": "line one\n  line two\n"}, {"text": "   "}, {"text": "Tabs\tand  spaces."}]
    (folder / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "\n")
    (folder / "b.md").write_text("# B\n\nbody\n")
    (folder / "sub" / "c.txt").write_text(" \n\n")  # whitespace only: nothing to score
    (folder / "skip.csv").write_text("not,read\n")
    docs = read_documents(str(folder))
    assert docs.texts == ["line one\n  line two\n", "Tabs\tand  spaces.", "# B\n\nbody\n"]
    assert docs.sources == [f"{folder}/a.jsonl:1", f"{folder}/a.jsonl:3", f"{folder}/b.md"]


def test_only_the_builtin_corpus_is_joined_from_sentences():
    docs = read_documents()
    assert JOINED in docs.how and "builtin" in docs.how
    assert all("\n" not in t for t in docs.texts[:50])  # sentences joined by single spaces


@pytest.mark.parametrize("content,needle", [
    ('{"text": "ok"}\n{"txt": "no"}\n', 'line 2: expected an object with a string "text" field'),
    ('{"text": "ok"}\n{broken\n', "line 2: invalid JSON"),
    ("\n  \n", "empty"),
])
def test_bad_jsonl_is_one_line_naming_the_line(tmp_path, content, needle):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(PlmlabError, match=needle):
        read_documents(str(path))


def test_a_bad_byte_is_one_line_with_its_offset(tmp_path):
    path = tmp_path / "latin1.md"
    path.write_bytes(b"\xef\xbb\xbfcaf\xe9")
    with pytest.raises(PlmlabError, match="invalid UTF-8 byte 0xe9 at byte offset 6"):
        read_documents(str(path))


# ----------------------------------------------------------------------------- windows
@pytest.mark.parametrize("n,length,stride", [(11, 6, 3), (50, 16, 16), (33, 8, 5), (5, 8, 8)])
def test_the_last_window_ends_at_the_end_with_full_context(n, length, stride):
    spans = windows(n, length, stride)
    begin, start, end = spans[-1]
    assert end == n and begin == max(0, n - length)
    assert [p for _, s, e in spans for p in range(s, e)] == list(range(n))  # each position once


# ----------------------------------------------------------------------------- a tiny random model
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """gpt-tiny (128 positions) with a byte-level BPE trained on the excerpt, saved where
    transformers loads it, and the excerpt as a file."""
    root = tmp_path_factory.mktemp("ppl-file")
    tok = train_tokenizer([MARKDOWN] * 10, "gpt2", vocab_size=400, min_frequency=1)
    torch.manual_seed(0)
    plmlab.save_pretrained(plmlab.build_model("gpt-tiny", vocab_size=tok.vocab_size), root / "model", tokenizer=tok)
    (root / "excerpt.md").write_bytes(MARKDOWN.encode("utf-8"))
    return root, start_token(tok)


def test_tiny_model_file_perplexity_equals_lm_eval_and_a_hand_computation(tiny, capsys):
    root, prefix = tiny
    path, length = root / "excerpt.md", 32
    argv = ["evaluate", "--model", str(root / "model"), "--task", "perplexity", "--data", str(path),
            "--max-length", str(length), "--stride", str(length), "--json", "--out", str(root / "items.jsonl")]
    assert main(argv) == 0
    m = json.loads(capsys.readouterr().out)
    hf = transformers.AutoModelForCausalLM.from_pretrained(root / "model").eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(root / "model")
    ids = hf_tok(MARKDOWN, add_special_tokens=False).input_ids
    assert m["text"] == AS_WRITTEN and m["n"] == 1
    assert m["tokens"] == len(ids) > 3 * length  # every token of the text as written, several windows
    assert m["bytes"] == path.stat().st_size  # bits per byte divides by the file's bytes
    total = m["nll"] * m["tokens"]
    assert total == pytest.approx(rolling_nll(hf, hf_tok, MARKDOWN, length, prefix), rel=1e-5)
    assert total == pytest.approx(hand_nll(hf, ids, prefix, length), rel=1e-5)
    assert m["bits_per_byte"] == pytest.approx(total / math.log(2) / path.stat().st_size, rel=1e-9)
    (item,) = [json.loads(line) for line in (root / "items.jsonl").read_text().splitlines()]
    assert item["source"] == str(path) and item["tokens"] == m["tokens"]


# ----------------------------------------------------------------------------- a real LLM
@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    """Both sides loaded once: transformers' model and tokenizer, plmlab's."""
    model = transformers.LlamaForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    return (model, transformers.AutoTokenizer.from_pretrained(smollm2_dir), plmlab.load_pretrained(smollm2_dir),
            plmlab.load_tokenizer(smollm2_dir))


@pytest.mark.real_weights
def test_real_llm_file_perplexity_equals_lm_evals_rolling_loglikelihood(smollm2, tmp_path):
    """The tiny model's test above goes through the CLI and checks the hand computation too; here
    the library on the same excerpt (~290 tokens, windows of 128): each pass of the text costs
    seconds on one CPU thread, so two of them."""
    hf, hf_tok, ours, tok = smollm2
    path, length = tmp_path / "excerpt.md", 128
    path.write_bytes(MARKDOWN.encode("utf-8"))
    m = evaluate_perplexity(ours, tok, read_documents(str(path)).texts, max_length=length, stride=length).metrics
    ids = hf_tok(MARKDOWN, add_special_tokens=False).input_ids
    assert m["tokens"] == len(ids) >= 2 * length and m["bytes"] == path.stat().st_size
    total = m["nll"] * m["tokens"]
    assert total == pytest.approx(rolling_nll(hf, hf_tok, MARKDOWN, length, start_token(tok)), rel=1e-5)
    assert 2 < m["perplexity"] < 60  # a real model reading real text
