"""The T5 family end to end on the command line with a tiny model: pretrain with span
corruption on a small corpus, load the result in transformers, generate from it."""

import json
import random
import subprocess
import sys

import pytest
import torch

import plmlab
from plmlab.tokenizers import train_tokenizer

WORDS = "the parser reads a file and the module returns a value while the server checks the cache".split()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t5cli")
    rng = random.Random(0)
    docs = [" ".join(" ".join(rng.sample(WORDS, 8)) + "." for _ in range(6)) for _ in range(40)]
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    train_tokenizer(docs, "t5", vocab_size=300).save(folder / "tok")
    cmd = [sys.executable, "-m", "plmlab", "pretrain", "--preset", "t5-tiny", "--objective", "span-corruption",
           "--corpus", str(folder / "corpus.jsonl"), "--tokenizer", str(folder / "tok"), "--out", str(folder / "run"),
           "--max-steps", "6", "--eval-every", "3", "--batch-size", "4", "--seq-len", "32", "--threads", "1",
           "--sample-tokens", "0", "--progress", "none"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return folder


def test_pretrain_span_corruption_writes_a_t5_checkpoint(run_dir):
    records = [json.loads(line) for line in (run_dir / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 7)) and all(r["loss"] > 0 for r in steps)
    assert any("val_loss" in r for r in records)
    final = run_dir / "run" / "final"
    assert json.loads((final / "config.json").read_text())["architectures"] == ["T5ForConditionalGeneration"]
    transformers = pytest.importorskip("transformers")
    hf = transformers.T5ForConditionalGeneration.from_pretrained(final).eval()
    ours = plmlab.load_pretrained(final)
    ids, dec = torch.tensor([[5, 6, 7, 8, 1]]), torch.tensor([[0, 9, 10]])
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=ids, decoder_input_ids=dec).logits,
                                   hf(input_ids=ids, decoder_input_ids=dec).logits, atol=1e-4, rtol=1e-4)


def test_generate_cli_on_the_pretrained_model(run_dir):
    final = str(run_dir / "run" / "final")
    out = subprocess.run([sys.executable, "-m", "plmlab", "generate", "--model", final, "--max-new-tokens", "5",
                          "--num-beams", "2", "--json", "the parser <extra_id_0> a file."],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)[0]
    assert 1 <= len(result["ids"]) <= 5
    model = plmlab.load_pretrained(final)
    tok = plmlab.tokenizers.load_tokenizer(final)
    ids = torch.tensor([tok.encode("the parser <extra_id_0> a file.")])
    assert plmlab.generate(model, ids, max_new_tokens=5, num_beams=2).tolist()[0] == result["ids"]
