"""--grad-accum for the fine-tuning verbs (finetune/options.py, run.py): a step is grad_accum
micro-batches of batch_size examples on each rank, and its loss is the per-token mean over the
whole global batch -- so SFT on packed conversations with answers of unequal lengths gives the
same gradients for 8 x 1, 2 x 4 and 1 x 8, the same run for --batch-size 8 and --batch-size 2
--grad-accum 4, on 2 DDP ranks as in one process, and --resume after a SIGKILL stays bit-identical."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from run_helpers import kill_after_records
import torch
from safetensors.torch import load_file

import plmlab
from plmlab.finetune.sft import SftTask, chat_tokenizer, grown_model, pad_id_of, sft, sft_options
from plmlab.finetune.sft_data import conversation, encode_causal
from plmlab.hf.manifest import list_checkpoints
from plmlab.tokenizers import load_tokenizer, train_tokenizer
from plmlab.train import read_metrics
from plmlab.train.loop import LoopOptions, Trainer, TrainState
from plmlab.train.metrics import Progress
from plmlab.train.parallel import Parallelized
from plmlab.train.precision import Precision
from test_sft import _InOrder  # examples in file order: every split sees the same eight

TEXTS = ["what does split do? it splits a string on a separator.", "which module has dumps? json.",
         "the model learns from text and answers questions about it."] * 30
ANSWERS = ["json.", "it splits a string on a separator.", "from text and answers questions about it.", "yes."]
CONVS = [{"prompt": f"question {i}?", "response": ANSWERS[i % len(ANSWERS)]} for i in range(32)]
RUN = dict(epochs=2, lr=1e-3, weight_decay=0.01, seq_len=64, seed=3, threads=1, progress="none", save_every=1)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A gpt-tiny without dropout (so micro-batch splits see the same numbers), 32 conversations."""
    folder = tmp_path_factory.mktemp("accum")
    torch.manual_seed(0)
    model = plmlab.build_model("gpt-tiny", dropout=0.0, attn_dropout=0.0)
    plmlab.save_pretrained(model, folder / "model", tokenizer=train_tokenizer(TEXTS, "gpt2", 300))
    (folder / "chat.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CONVS))
    return folder


@pytest.fixture(scope="module")
def reference(root):
    """--batch-size 2 --grad-accum 4, uninterrupted (8 steps of 8 conversations)."""
    run(root, root / "reference", batch_size=2, grad_accum=4)
    return root / "reference"


def run(root: Path, out: Path, **kw) -> list[dict]:
    threads = torch.get_num_threads()
    try:
        return sft(sft_options(str(root / "model"), str(out), str(root / "chat.jsonl"), **{**RUN, **kw}),
                   log=lambda line: None)
    finally:
        torch.set_num_threads(threads)


def cli_args(root: Path, out: Path, **kw) -> list[str]:
    args = ["sft", "--model", str(root / "model"), "--data", str(root / "chat.jsonl"), "--out", str(out)]
    for key, value in {**RUN, **kw}.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def torchrun(args: list[str], nproc: int = 2, env: dict | None = None) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node nproc -m plmlab ARGS` on CPU (gloo), this checkout's code."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = str(Path(plmlab.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {}),
           "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                           "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "plmlab", *args],
                          env=env, capture_output=True, text=True, timeout=240)


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "final" / "model.safetensors")


def assert_same_run(ours: Path, theirs: Path, rel: float = 1e-5, atol: float = 5e-5) -> None:
    a, b = read_metrics(ours / "metrics.jsonl"), read_metrics(theirs / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 9))
    assert [r["tokens"] for r in a] == [r["tokens"] for r in b]
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=rel)
    wa, wb = final_weights(ours), final_weights(theirs)
    assert wa.keys() == wb.keys()
    for k in wa:
        # AdamW divides by sqrt(v): float summation order shows up near 1e-5 in the weights
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=atol, msg=k)


# ---------------------------------------------------------------------------- one step, exactly
def one_step(root: Path, batch_size: int, grad_accum: int) -> tuple[float, torch.Tensor]:
    """(the step's loss, its gradient: the SGD lr-1 update) of one step over 8 conversations."""
    tok = chat_tokenizer(load_tokenizer(root / "model"))
    examples = [encode_causal(tok, conversation(c, f"t:{i}"), 64) for i, c in enumerate(CONVS[:8])]
    assert len({int((e["labels"] != -100).sum()) for e in examples}) > 2  # unequal answer lengths
    model = grown_model(plmlab.load_pretrained(root / "model"), tok.vocab_size, 0).train()
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    task = SftTask(64, False).use(examples, [], pad_id_of(tok), batch_size, 0)
    task.make_order = lambda state: _InOrder(len(examples))
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    trainer = Trainer(task, Parallelized(model, model), opt, Precision("fp32", torch.device("cpu")), lambda s: 1.0,
                      LoopOptions(max_steps=1, clip=0), TrainState(batch_size=batch_size, grad_accum=grad_accum),
                      save=lambda: None, log=None, progress=Progress("none", 0, 1), device=torch.device("cpu"))
    record = trainer.train_step()
    return record["loss"], before - torch.cat([p.detach().flatten() for p in model.parameters()])


def test_gradients_and_loss_are_the_same_for_8x1_2x4_and_1x8_on_packed_rows(root):
    tok = chat_tokenizer(load_tokenizer(root / "model"))
    examples = [encode_causal(tok, conversation(c, "t"), 64) for c in CONVS[:8]]
    rows = SftTask(64, False).use(examples, [], pad_id_of(tok), 8, 0)
    assert rows.batch([(0, i) for i in range(8)]).inputs["input_ids"].shape[0] > 1  # 8 x 1 packs several rows
    loss, grad = one_step(root, 8, 1)
    for split in ((2, 4), (1, 8)):
        other_loss, other_grad = one_step(root, *split)
        assert other_loss == pytest.approx(loss, rel=1e-6, abs=1e-6)
        torch.testing.assert_close(other_grad, grad, atol=1e-6, rtol=1e-5)
    assert float(grad.abs().max()) > 1e-3  # the step did move the weights


# ---------------------------------------------------------------------------- whole runs
def test_grad_accum_from_the_cli_runs_as_the_larger_batch(root, reference, tmp_path):
    from plmlab.cli import main

    assert main(cli_args(root, tmp_path / "big", batch_size=8)) == 0
    assert_same_run(tmp_path / "big", reference)
    bad = subprocess.run([sys.executable, "-m", "plmlab", *cli_args(root, tmp_path / "bad", grad_accum=0)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--grad-accum" in bad.stderr and bad.stderr.count("\n") == 1


def test_ddp_two_ranks_with_accumulation_match_one_process(root, reference, tmp_path):
    done = torchrun(cli_args(root, tmp_path / "two", batch_size=2, grad_accum=2))  # 2 ranks x 2 x 2 = 8
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_run(tmp_path / "two", reference)


def test_sigkill_then_resume_with_accumulation_is_bit_identical(root, reference, tmp_path, capsys):
    out = tmp_path / "run"
    kill_after_records(cli_args(root, out, batch_size=2, grad_accum=4), out, 4, "slow@0.3", 120)
    saved = list_checkpoints(out / "checkpoints")[-1][0]
    assert 3 <= saved < 8 and not (out / "final").exists()
    run(root, out, batch_size=2, grad_accum=4, resume=True)
    assert f"from step-{saved:08d}" in capsys.readouterr().err  # resumed, not started over
    ours, theirs = read_metrics(out / "metrics.jsonl"), read_metrics(reference / "metrics.jsonl")
    assert [r["step"] for r in ours] == list(range(1, 9))
    assert [r["loss"] for r in ours] == [r["loss"] for r in theirs]  # bit-identical
    a, b = final_weights(out), final_weights(reference)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
