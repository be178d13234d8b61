"""DPO (issue 11, item 4): the loss against a hand computation, log-probs over response tokens
only, the concatenated padded batch, a tiny GPT that learns to prefer `chosen`, bad input as
one line, and a resume after a signal equal to an uninterrupted run."""

from __future__ import annotations

import json
import math
import signal
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import plmlab
from plmlab.cli import main
from plmlab.errors import PlmlabError
from plmlab.finetune.dpo import (collate_pairs, dpo, dpo_loss, dpo_options, encode_preference, read_preferences,
                                 sequence_logps)
from plmlab.hf.manifest import list_checkpoints
from plmlab.masks import IGNORE_INDEX
from plmlab.tokenizers import load_tokenizer, train_tokenizer
from plmlab.train import read_metrics

POS, NEG = ["good", "great", "fine", "nice"], ["bad", "awful", "poor", "sad"]
FILL = ["the", "movie", "was", "really", "a", "plot", "and", "actors"]
RUN = dict(batch_size=4, lr=1e-3, threads=1, progress="none", seed=3)


def quiet(line: str) -> None:
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """16 pairs (chosen: a positive word, rejected: a negative one); a gpt-tiny without dropout
    (`model`) and one with dropout (`dropout`: the resume must restore dropout's generator)."""
    root = tmp_path_factory.mktemp("dpo")
    rng = np.random.default_rng(0)
    rows = [{"prompt": " ".join(rng.choice(FILL, size=4)),
             "chosen": f" {rng.choice(POS)} {rng.choice(FILL)}", "rejected": f" {rng.choice(NEG)} {rng.choice(FILL)}"}
            for _ in range(16)]
    (root / "prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = train_tokenizer([r[k] for r in rows for k in r], "gpt2", vocab_size=300, min_frequency=1)
    for name, dropout in (("model", 0.0), ("dropout", 0.1)):
        torch.manual_seed(0)
        model = plmlab.build_model("gpt-tiny", vocab_size=tok.vocab_size, dropout=dropout, attn_dropout=dropout)
        plmlab.save_pretrained(model, root / name, tokenizer=tok)
    return root


def options(root: Path, out: Path, model: str = "model", **kw):
    return dpo_options(str(root / model), str(root / "prefs.jsonl"), str(out), **{**RUN, **kw})


def run_dpo(o) -> list[dict]:
    threads = torch.get_num_threads()
    try:
        return dpo(o, log=quiet)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_loss_equals_a_hand_computation(beta):
    policy_c, policy_r = torch.tensor([-3.0, -10.0, -2.5]), torch.tensor([-4.0, -6.0, -2.5])
    ref_c, ref_r = torch.tensor([-3.5, -9.0, -1.0]), torch.tensor([-3.0, -7.5, -4.0])
    losses, chosen, rejected = dpo_loss(policy_c, policy_r, ref_c, ref_r, beta)
    for i in range(3):
        margin = (policy_c[i].item() - ref_c[i].item()) - (policy_r[i].item() - ref_r[i].item())
        expected = -math.log(1 / (1 + math.exp(-beta * margin)))
        assert losses[i].item() == pytest.approx(expected, rel=1e-6)
        assert chosen[i].item() == pytest.approx(beta * (policy_c[i].item() - ref_c[i].item()), rel=1e-6)
        assert rejected[i].item() == pytest.approx(beta * (policy_r[i].item() - ref_r[i].item()), rel=1e-6)
    # pair 2 by hand: (-2.5 - -1.0) - (-2.5 - -4.0) = -3: the chosen lost ground, a loss above log 2
    assert losses[2].item() == pytest.approx(math.log(1 + math.exp(3 * beta)), rel=1e-6)
    assert losses[2].item() > math.log(2) > losses[0].item()


def test_the_batch_is_chosen_then_rejected_with_labels_on_responses_only(data):
    tok = load_tokenizer(data / "model")
    records = read_preferences(str(data / "prefs.jsonl"))[:3]
    examples = [encode_preference(r, tok, 64, False) for r in records]
    batch = collate_pairs(examples, pad_id=7)
    assert batch["input_ids"].shape[0] == 6
    for i, r in enumerate(records):
        prompt = tok.encode(r["prompt"])
        for row, key in ((i, "chosen"), (3 + i, "rejected")):
            response = tok.encode(r[key], add_special_tokens=False) + [tok.eos_id]
            n = len(prompt) + len(response)
            assert batch["input_ids"][row, :n].tolist() == prompt + response
            assert batch["labels"][row].tolist() == [IGNORE_INDEX] * len(prompt) + response + \
                [IGNORE_INDEX] * (batch["labels"].shape[1] - n)
            assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (batch["labels"].shape[1] - n)
    logits = torch.randn(*batch["input_ids"].shape, tok.vocab_size)
    got = sequence_logps(logits, batch["labels"])
    for row in range(6):  # by hand: the labelled tokens, each predicted by the previous position
        logp = logits[row].log_softmax(-1)
        want = sum(logp[t - 1, batch["labels"][row, t]].item() for t in range(1, logits.shape[1])
                   if batch["labels"][row, t] != IGNORE_INDEX)
        assert got[row].item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("preset", ["gpt-tiny", "llama-tiny", "glm4-tiny"])
def test_padding_in_the_concatenated_batch_does_not_change_the_log_probs(data, preset):
    """Right padding behind the attention mask, for learned and rotary (GQA, partial) positions."""
    tok = load_tokenizer(data / "model")
    torch.manual_seed(0)
    model = plmlab.build_model(preset, vocab_size=tok.vocab_size).eval()
    examples = [encode_preference(r, tok, 64, False) for r in read_preferences(str(data / "prefs.jsonl"))[:4]]
    batch = collate_pairs(examples, pad_id=0)
    with torch.no_grad():
        together = sequence_logps(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                  batch["labels"])
        for i, e in enumerate(examples):
            alone = collate_pairs([e], pad_id=0)
            logps = sequence_logps(model(input_ids=alone["input_ids"]).logits, alone["labels"])
            torch.testing.assert_close(logps, together[[i, 4 + i]], rtol=1e-5, atol=1e-5)


def test_a_tiny_gpt_learns_to_prefer_chosen(data, tmp_path):
    history = run_dpo(options(data, tmp_path / "run", epochs=3, beta=0.1, eval=str(data / "prefs.jsonl")))
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 13))  # 3 epochs x 4 batches of 4 pairs
    # step 1: the policy is the reference (no dropout), so every reward is 0: loss log 2, no pair won
    assert records[0]["loss"] == pytest.approx(math.log(2), abs=1e-6) and records[0]["reward_accuracy"] == 0.0
    assert all({"reward_accuracy", "reward_margin", "chosen_reward", "rejected_reward"} <= set(r) for r in records)
    assert records[-1]["reward_margin"] > 0 == records[0]["reward_margin"]
    first, last = history[0], history[-1]
    assert last["train_loss"] < first["train_loss"] < math.log(2)
    assert last["eval_reward_accuracy"] >= 0.9 and last["eval_loss"] < math.log(2) - 0.1
    assert last["eval_reward_margin"] > first["eval_reward_margin"] > 0
    assert last["eval_chosen_reward"] > 0 > last["eval_rejected_reward"]
    assert [r["step"] for r in records if "eval_reward_margin" in r] == [4, 8, 12]
    final = tmp_path / "run" / "final"
    assert (final / "tokenizer.json").exists()
    # the rewards are measured against the starting checkpoint: recompute them from the two models
    tok, examples = load_tokenizer(final), read_preferences(str(data / "prefs.jsonl"))
    batch = collate_pairs([encode_preference(r, tok, 64, False) for r in examples], pad_id=0)
    with torch.no_grad():
        logps = [sequence_logps(plmlab.load_pretrained(d)(input_ids=batch["input_ids"],
                                                          attention_mask=batch["attention_mask"]).logits,
                                batch["labels"]) for d in (final, data / "model")]
    rewards = 0.1 * (logps[0] - logps[1])  # (2B,) beta x (policy - reference)
    assert last["eval_chosen_reward"] == pytest.approx(float(rewards[:16].mean()), abs=1e-5)
    assert last["eval_reward_margin"] == pytest.approx(float((rewards[:16] - rewards[16:]).mean()), abs=1e-5)


def write(path: Path, rows: list) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("rows, extra, message", [
    ([{"prompt": "the movie", "chosen": " good"}], [], "prefs.jsonl:1: missing field 'rejected'"),
    ([{"prompt": "a", "chosen": " good", "rejected": " bad"}, {"prompt": "a", "chosen": "  ", "rejected": "b"}], [],
     "prefs.jsonl:2: empty chosen response"),
    ([{"prompt": "the movie was really a plot", "chosen": " good", "rejected": " bad"}], ["--max-length", "4"],
     "prefs.jsonl:1: the prompt has"),
    ([{"prompt": "the", "chosen": " good and fine and nice", "rejected": " bad"}], ["--max-length", "4"],
     "more than the limit of 4 (pass --truncate"),
    (["[1, 2]"], [], "prefs.jsonl:1: expected a JSON object"),
])
def test_bad_data_is_one_line(data, tmp_path, capsys, rows, extra, message):
    out = tmp_path / "run"
    args = ["dpo", "--model", str(data / "model"), "--data", write(tmp_path / "prefs.jsonl", rows), "--out", str(out)]
    assert main(args + ["--progress", "none", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (out / "metrics.jsonl").exists()


def test_an_encoder_or_a_bad_beta_is_refused_in_one_line(data, tmp_path, capsys):
    tok = load_tokenizer(data / "model")
    plmlab.save_pretrained(plmlab.build_model("bert-tiny", vocab_size=tok.vocab_size), tmp_path / "bert", tokenizer=tok)
    base = ["dpo", "--data", str(data / "prefs.jsonl"), "--out", str(tmp_path / "run"), "--progress", "none"]
    assert main(base + ["--model", str(tmp_path / "bert")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dpo needs a decoder-only model" in err and "GPT, LLaMA" in err
    assert main(base + ["--model", str(data / "model"), "--beta", "0"]) == 2
    assert "--beta: must be > 0" in capsys.readouterr().err
    with pytest.raises(PlmlabError, match="--beta must be a finite number > 0"):
        dpo_options("m", "d", "o", beta=float("nan"))


def test_sigint_then_resume_equals_an_uninterrupted_run(data, tmp_path, capsys, monkeypatch):
    reference, out = tmp_path / "reference", tmp_path / "run"
    run_dpo(options(data, reference, "dropout", epochs=2, save_every=2))
    args = ["dpo", "--model", str(data / "dropout"), "--data", str(data / "prefs.jsonl"), "--out", str(out),
            "--epochs", "2", "--save-every", "2", *[x for k, v in RUN.items() for x in (f"--{k.replace('_', '-')}", str(v))]]
    monkeypatch.setenv("PLMLAB_TEST_FAULT", "sigint@3")
    assert main(args) == 128 + signal.SIGINT
    assert "continue with --resume" in capsys.readouterr().err
    assert list_checkpoints(out / "checkpoints")[-1][0] == 3 and not (out / "final").exists()
    monkeypatch.delenv("PLMLAB_TEST_FAULT")
    assert main(args) == 2 and "already holds a run" in capsys.readouterr().err  # no --resume: refused
    with pytest.raises(PlmlabError, match=r"extra .*beta"):
        run_dpo(options(data, out, "dropout", epochs=2, save_every=2, beta=0.2, resume=True))
    assert main(args + ["--resume"]) == 0
    assert "from step-00000003" in capsys.readouterr().err  # resumed, not started over
    ours, theirs = read_metrics(out / "metrics.jsonl"), read_metrics(reference / "metrics.jsonl")
    assert [r["step"] for r in ours] == list(range(1, 9))
    assert [r["loss"] for r in ours] == [r["loss"] for r in theirs]  # bit-identical
    assert [r["reward_accuracy"] for r in ours] == [r["reward_accuracy"] for r in theirs]
    a, b = load_file(out / "final/model.safetensors"), load_file(reference / "final/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ddp_two_processes_match_one_with_the_same_global_batch(data, tmp_path):
    """torchrun, 2 CPU processes x 2 pairs == 1 process x 4 pairs (no dropout: the same numbers)."""
    run_dpo(options(data, tmp_path / "one", epochs=1))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = str(Path(plmlab.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = ["dpo", "--model", str(data / "model"), "--data", str(data / "prefs.jsonl"), "--out", str(tmp_path / "two"),
            "--epochs", "1", *[x for k, v in {**RUN, "batch_size": 2}.items() for x in (f"--{k.replace('_', '-')}", str(v))]]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                           "127.0.0.1", "--master_port", str(port), "-m", "plmlab", *args],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    ours, theirs = read_metrics(tmp_path / "two" / "metrics.jsonl"), read_metrics(tmp_path / "one" / "metrics.jsonl")
    assert [r["step"] for r in ours] == [r["step"] for r in theirs] == [1, 2, 3, 4]
    assert [r["tokens"] for r in ours] == [r["tokens"] for r in theirs]
    assert [r["loss"] for r in ours] == pytest.approx([r["loss"] for r in theirs], rel=1e-5)
    a, b = load_file(tmp_path / "two/final/model.safetensors"), load_file(tmp_path / "one/final/model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=5e-5, msg=k)


def test_dpo_with_lora_trains_the_adapters_only_and_saves_them(data, tmp_path):
    from safetensors.torch import load_file

    from plmlab.train.lora import LoraOptions

    out = tmp_path / "lora"
    history = run_dpo(options(data, out, epochs=2, lr=5e-3, lora=LoraOptions(r=4, alpha=8)))
    assert history[-1]["train_loss"] < math.log(2)  # the adapters moved the policy off the reference
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert adapter and all(".lora_A." in k or ".lora_B." in k for k in adapter)
    base = plmlab.load_pretrained(data / "model").state_dict()
    final = plmlab.load_pretrained(out / "final").state_dict()  # merged: differs from the base
    assert any(not torch.equal(base[k], final[k]) for k in base)


# ---------------------------------------------------------------------------- the chat template, built-in pairs
CHAT = [{"prompt": "what does split do?", "chosen": "it splits a string.", "rejected": "json."},
        {"prompt": [{"role": "system", "content": "be terse."}, {"role": "user", "content": "which module has dumps?"}],
         "chosen": [{"role": "assistant", "content": "json."}], "rejected": [{"role": "assistant", "content": "text."}]}]


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    """A gpt-tiny whose tokenizer carries ChatML (as `plmlab sft` saves it)."""
    from plmlab.tokenizers.chat import with_chat_template

    folder = tmp_path_factory.mktemp("chat")
    texts = [" ".join(r[k] if isinstance(r[k], str) else r[k][-1]["content"] for k in r) for r in CHAT] * 20
    tok = with_chat_template(train_tokenizer(texts + FILL, "gpt2", vocab_size=300, min_frequency=1))
    torch.manual_seed(0)
    plmlab.save_pretrained(plmlab.build_model("gpt-tiny", vocab_size=tok.vocab_size), folder / "model", tokenizer=tok)
    write(folder / "prefs.jsonl", CHAT)
    return folder


def test_with_a_chat_template_a_row_is_what_sft_trains_and_chat_renders(chat_dir):
    """The chosen row is apply_chat_template(prompt + [chosen]) up to and with <|im_end|> (transformers' ids
    on the saved tokenizer), its prompt part the rendering with the generation prompt (what `plmlab chat`
    feeds), and the labels exactly the response and <|im_end|>: SFT's loss mask for that turn."""
    from plmlab.tokenizers.chat import encode_chat, encode_chat_for_training

    transformers = pytest.importorskip("transformers", reason="transformers (test extra) is the oracle")
    theirs = transformers.AutoTokenizer.from_pretrained(chat_dir / "model")
    tok = load_tokenizer(chat_dir / "model")
    records = read_preferences(str(chat_dir / "prefs.jsonl"))
    end = tok.token_to_id("<|im_end|>")
    for record, raw in zip(records, CHAT):
        messages = raw["prompt"] if isinstance(raw["prompt"], list) else [{"role": "user", "content": raw["prompt"]}]
        example = encode_preference(record, tok, 64, False)
        for key in ("chosen", "rejected"):
            turn = raw[key] if isinstance(raw[key], list) else [{"role": "assistant", "content": raw[key]}]
            full = list(theirs.apply_chat_template(messages + turn, return_dict=False))
            prompt = list(theirs.apply_chat_template(messages, add_generation_prompt=True, return_dict=False))
            ids, labels = example[f"{key}_ids"].tolist(), example[f"{key}_labels"].tolist()
            assert ids == full[:full.index(end, len(prompt)) + 1] and ids[:len(prompt)] == prompt
            assert ids == encode_chat(tok, messages + turn, add_generation_prompt=False)[:len(ids)]
            sft_ids, flags = encode_chat_for_training(tok, messages + turn)
            learned = [i for i, f in zip(sft_ids[len(prompt):], flags[len(prompt):]) if f]
            assert [x for x in labels if x != IGNORE_INDEX] == learned == ids[len(prompt):]
            assert labels[:len(prompt)] == [IGNORE_INDEX] * len(prompt)
            assert tok.decode(learned, skip_special_tokens=False) == turn[0]["content"] + "<|im_end|>"


def test_without_a_template_a_conversational_record_is_one_line(data, tmp_path, capsys):
    args = ["dpo", "--model", str(data / "model"), "--data", write(tmp_path / "prefs.jsonl", CHAT[1:]),
            "--out", str(tmp_path / "run"), "--progress", "none"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "prefs.jsonl:1: a conversational record needs a chat template" in err, err
    bad = [{**CHAT[1], "chosen": [{"role": "user", "content": "json."}]}]
    assert main(args[:4] + [write(tmp_path / "bad.jsonl", bad)] + args[5:]) == 2
    assert "bad.jsonl:1: chosen must be a string or a list of one" in capsys.readouterr().err


def test_without_data_dpo_trains_on_the_builtin_pairs_and_scores_their_eval_split(data, tmp_path, monkeypatch,
                                                                                   capsys):
    from plmlab.finetune import dpo as dpo_module

    asked = []

    def builtin(split):  # a few of the built-in pairs, so that the test is quick
        asked.append(split)
        return [{"prompt": f"the movie {split} {i}", "chosen": " good", "rejected": " bad"} for i in range(4)]

    monkeypatch.setattr(dpo_module, "builtin_preferences", builtin)
    options = dpo_options(str(data / "model"), out=str(tmp_path / "api"), **RUN)
    assert options.train == "builtin" and options.eval is None
    args = ["dpo", "--model", str(data / "model"), "--out", str(tmp_path / "cli"), "--json", "--epochs", "1",
            *[x for k, v in RUN.items() for x in (f"--{k.replace('_', '-')}", str(v))]]
    assert main(args) == 0
    history = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert asked == ["train", "eval"] and "eval_reward_accuracy" in history[-1]
    assert [r["step"] for r in read_metrics(tmp_path / "cli" / "metrics.jsonl")] == [1]  # 4 pairs, batches of 4
