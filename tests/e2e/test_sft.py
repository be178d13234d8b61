"""SFT (finetune/sft.py, sft_data.py): labels on assistant tokens only, also packed; packing
never lets one example see another; per-token normalisation is the same for 1 x 8 and 4 x 2
micro-batches; the run writes final/ with the chat template; bad data is one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import plmlab
from plmlab.finetune.sft import SftTask, grown_model, pad_id_of, sft, sft_options
from plmlab.finetune.sft_data import conversation, encode_causal, pack
from plmlab.masks import IGNORE_INDEX
from plmlab.tokenizers import load_tokenizer, train_tokenizer
from plmlab.tokenizers.chat import with_chat_template
from plmlab.train.loop import LoopOptions, Trainer, TrainState
from plmlab.train.metrics import Progress
from plmlab.train.parallel import Parallelized
from plmlab.train.precision import Precision

TEXTS = ["what does split do? it splits a string.", "which module has dumps? json.",
         "the model learns from text and answers questions."] * 30
CONVS = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "what does split do?"},
                       {"role": "assistant", "content": "it splits a string."},
                       {"role": "user", "content": "and dumps?"}, {"role": "assistant", "content": "json."}]},
         {"prompt": "which module has dumps?", "response": "json."},
         {"prompt": "the model learns?", "response": "from text."}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("gpt")
    plmlab.save_pretrained(plmlab.build_model("gpt-tiny"), folder, tokenizer=train_tokenizer(TEXTS, "gpt2", 300))
    return folder


@pytest.fixture(scope="module")
def chat_tok(model_dir):
    return with_chat_template(load_tokenizer(model_dir))


def records(n=8):
    return [conversation(CONVS[i % len(CONVS)], f"t:{i}") for i in range(n)]


def learned(tok, example) -> str:
    return tok.decode([int(t) for t in example["labels"] if t != IGNORE_INDEX], skip_special_tokens=False)


def test_labels_only_on_assistant_tokens_also_when_packed(chat_tok):
    first, second = (encode_causal(chat_tok, r, 128) for r in records(2))
    assert learned(chat_tok, first) == "it splits a string.<|im_end|>json.<|im_end|>"
    assert learned(chat_tok, second) == "json.<|im_end|>"
    ids = first["input_ids"]  # labels are the next token, shifted
    at = [i for i, t in enumerate(first["labels"]) if t != IGNORE_INDEX]
    assert all(first["labels"][i] == ids[i + 1] for i in at)
    batch = pack([first, second], 128, 0)
    assert batch["input_ids"].shape[0] == 1  # one row holds both
    row = batch["labels"][0]
    assert chat_tok.decode(row[row != IGNORE_INDEX].tolist(), skip_special_tokens=False) == \
        learned(chat_tok, first) + learned(chat_tok, second)
    everything = encode_causal(chat_tok, records(2)[1], 128, train_on_prompt=True)
    assert int((everything["labels"] != IGNORE_INDEX).sum()) == len(everything["input_ids"]) - 1


def test_packing_never_lets_one_example_see_another(model_dir, chat_tok):
    model = grown_model(plmlab.load_pretrained(model_dir), chat_tok.vocab_size, 0).eval()
    examples = [encode_causal(chat_tok, r, 128) for r in records(6)[1:]]  # short ones first: rows share
    batch = pack(examples[:2], 128, 0)
    assert batch["input_ids"].shape[0] == 1 and int(batch["position_ids"][0].eq(0).sum()) == 2
    keys = ("input_ids", "attention_mask", "position_ids")
    with torch.no_grad():
        packed = model(**{k: batch[k] for k in keys}).logits[0]  # (T, V)
        start = 0
        for e in examples[:2]:
            n = len(e["input_ids"])
            alone = model(input_ids=torch.from_numpy(e["input_ids"])[None]).logits[0]  # (n, V)
            torch.testing.assert_close(packed[start:start + n], alone, atol=1e-5, rtol=1e-5)
            start += n
        assert sft_loss(model, batch) == pytest.approx(float(model(**{k: batch[k] for k in (*keys, "labels")}).loss))


def sft_loss(model, batch):
    logits = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}).logits
    return float(F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE_INDEX))


@pytest.mark.parametrize("split", [(8, 1), (2, 4)])
def test_per_token_loss_is_the_same_for_1x8_and_4x2(model_dir, chat_tok, split):
    examples = [encode_causal(chat_tok, r, 100) for r in records(8)]
    torch.manual_seed(0)
    model = grown_model(plmlab.load_pretrained(model_dir), chat_tok.vocab_size, 0).train()
    task = SftTask(100, False).use(examples, [], pad_id_of(chat_tok), split[0], 0)
    task.make_order = lambda state: _InOrder(len(examples))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    trainer = Trainer(task, Parallelized(model, model), opt, Precision("fp32", torch.device("cpu")), lambda s: 0.5,
                      LoopOptions(max_steps=1, clip=0), TrainState(batch_size=split[0], grad_accum=split[1]),
                      save=lambda: None, log=None, progress=Progress("none", 0, 1), device=torch.device("cpu"))
    record = trainer.train_step()
    # the reference: one mean over every assistant token of the 8 conversations, unpacked
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    _RESULTS[split] = (record["loss"], weights)
    if len(_RESULTS) == 2:
        (l1, w1), (l2, w2) = _RESULTS.values()
        assert l1 == pytest.approx(l2, rel=1e-5)
        torch.testing.assert_close(w1, w2, atol=1e-6, rtol=1e-5)


_RESULTS: dict = {}


class _InOrder:
    """Examples 0, 1, 2 ... in file order (both splits see the same eight)."""

    def __init__(self, n):
        self.n, self.epoch, self.position = n, 0, 0

    def take(self, count):
        picks = [(0, (self.position + i) % self.n) for i in range(count)]
        self.position += count
        return picks


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "plmlab", *map(str, args)], capture_output=True, text=True)


def test_sft_run_saves_the_model_with_its_chat_template(model_dir, tmp_path):
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in CONVS * 4))
    out = tmp_path / "run"
    history = sft(sft_options(str(model_dir), str(out), str(data), eval=str(data), epochs=2, batch_size=4,
                              lr=1e-3, progress="none"), log=lambda line: None)
    assert len(history) == 2 and history[1]["eval_loss"] < history[0]["eval_loss"]
    saved = json.loads((out / "final" / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in saved["chat_template"]
    final = plmlab.load_pretrained(out / "final")
    tok = load_tokenizer(out / "final")
    assert final.config.vocab_size >= tok.vocab_size and final.config.eos_token_id == tok.token_to_id("<|im_end|>")
    again = run_cli("sft", "--model", model_dir, "--data", data, "--out", out, "--epochs", "1")
    assert again.returncode == 2 and "--overwrite" in again.stderr


@pytest.mark.parametrize("line, reason", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant turn"),
    ({"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]}, "unknown role 'robot'"),
    ({"text": "hi"}, "expected"),
])
def test_bad_conversations_are_one_line_and_exit_2(model_dir, tmp_path, line, reason):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps(CONVS[1]) + "\n" + json.dumps(line) + "\n")
    result = run_cli("sft", "--model", model_dir, "--data", data, "--out", tmp_path / "run")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and reason in result.stderr and "bad.jsonl:2" in result.stderr
    assert not (tmp_path / "run" / "final").exists()


def test_objective_sft_shows_ids_labels_and_the_rendered_text(model_dir, tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(CONVS[0]))
    result = run_cli("objective", "sft", "--messages", path, "--tokenizer", model_dir, "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    tok = with_chat_template(load_tokenizer(model_dir))
    assert out["text"].startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert out["input_ids"] == encode_causal(tok, conversation(CONVS[0], "x"), 512)["input_ids"].tolist()
    assert tok.decode([t for t in out["labels"] if t != IGNORE_INDEX], skip_special_tokens=False) == \
        "it splits a string.<|im_end|>json.<|im_end|>"
    missing = run_cli("objective", "sft", "--json")
    assert missing.returncode == 2 and "--messages" in missing.stderr
    path.write_text(json.dumps([{"role": "user", "content": "hi"}]))
    bad = run_cli("objective", "sft", "--messages", path, "--tokenizer", model_dir)
    assert bad.returncode == 2 and "no assistant turn" in bad.stderr


def test_a_template_that_fails_to_render_is_one_line(model_dir, tmp_path):
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps(CONVS[1]) + "\n")
    template = tmp_path / "t.jinja"
    template.write_text("{{ raise_exception('no system turns here') }}")
    result = run_cli("sft", "--model", model_dir, "--data", data, "--out", tmp_path / "run", "--chat-template", template)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "failed to render: no system turns here" in result.stderr


def test_sft_with_lora_from_the_cli_saves_an_adapter_and_a_merged_final(model_dir, tmp_path):
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in CONVS * 4))
    out = tmp_path / "lora"
    done = run_cli("sft", "--model", model_dir, "--data", data, "--out", out, "--epochs", "1", "--batch-size", "4",
                   "--lr", "1e-3", "--progress", "none", "--lora-r", "4", "--lora-targets", "attention")
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["peft_type"] == "LORA"
    final = plmlab.load_pretrained(out / "final")
    assert final.config.vocab_size >= load_tokenizer(out / "final").vocab_size
    # the adapter carries the grown embeddings, the config and the tokenizer: merged onto the pretrained
    # model, it is final/ (the chat template's tokens included)
    done = run_cli("merge-lora", "--model", model_dir, "--adapter", out / "adapter", "--out", tmp_path / "merged")
    assert done.returncode == 0, done.stderr
    merged = plmlab.load_pretrained(tmp_path / "merged").state_dict()
    assert merged.keys() == final.state_dict().keys()
    assert all(torch.equal(merged[k], v) for k, v in final.state_dict().items())
    ours, theirs = load_tokenizer(tmp_path / "merged"), load_tokenizer(out / "final")
    assert ours.chat_template == theirs.chat_template and ours.vocab_size == theirs.vocab_size
