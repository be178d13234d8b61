"""A new user's first run: `plmlab --version`, the status lines before step 1, plain progress with
an early estimate, the default thread count, the hints after the summary, and what a finished run
leaves (summary.json with the options and the machine, final/README.md)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from plmlab import build_model, save_pretrained
from plmlab.cli import main
from plmlab.presets import get_preset
from plmlab.tokenizers import train_tokenizer
from plmlab.train import setup as train_setup
from plmlab.train.metrics import Progress
from plmlab.train.next_steps import next_steps
from test_train_run import write_corpus

STAGES = ("corpus", "tokenizer", "data", "model")


def test_version_names_plmlab_and_torch(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"plmlab {importlib.metadata.version('plmlab')} (torch {torch.__version__})\n"


# ------------------------------------------------------------------ a whole run through the CLI
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """gpt-tiny for 4 steps on a small corpus, with plain progress: (run dir, stdout, stderr),
    captured by hand (capsys is per test)."""
    corpus = write_corpus(tmp_path_factory.mktemp("corpus"), n_docs=37, seed=20)  # in no token cache yet
    out = tmp_path_factory.mktemp("runs") / "gpt"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["pretrain", "--preset", "gpt-tiny", "--corpus", str(corpus), "--out", str(out), "--max-steps", "4",
                   "--batch-size", "4", "--seq-len", "32", "--eval-batches", "2", "--threads", "1",
                   "--progress", "plain", "--sample-tokens", "0"])
    assert rc == 0
    return out, stdout.getvalue(), stderr.getvalue()


def test_each_stage_before_step_one_says_what_it_did(run):
    out, _, err = run
    lines = err.splitlines()
    first_step = next(i for i, line in enumerate(lines) if line.startswith("step 1/4"))
    stages = [m.group(1) for m in (re.match(r"plmlab: (\w+) \([\d.]+ s\): ", line) for line in lines) if m]
    assert stages == list(STAGES)
    assert all(lines.index(line) < first_step for line in lines if re.match(r"plmlab: (\w+) \(", line))
    # slow work that is cached afterwards is announced before it starts
    assert any(line.startswith("plmlab: tokenizer: training a gpt2-style tokenizer") for line in lines)
    assert any(line.startswith("plmlab: data: tokenizing 37 documents") for line in lines)
    summary = json.loads((out / "summary.json").read_text())
    model_line = next(line for line in lines if line.startswith("plmlab: model ("))
    assert f"{summary['params']:,} parameters" in model_line and "on cpu with 1 thread (--threads N" in model_line
    assert "37 documents" in next(line for line in lines if line.startswith("plmlab: corpus ("))


def test_the_summary_ends_with_hints_naming_the_run(run):
    out, stdout, _ = run
    hints = stdout.split("\nnext:\n")[1].splitlines()
    assert [h.strip() for h in hints] == next_steps(get_preset("gpt-tiny"), out)
    assert hints[0].strip() == f'plmlab generate --model {out} --prompt "The function returns"'


def test_summary_json_holds_the_options_and_the_machine(run):
    summary = json.loads((run[0] / "summary.json").read_text())
    assert summary["options"]["preset"] == "gpt-tiny" and summary["options"]["seq_len"] == 32
    assert summary["options"]["max_steps"] == 4 and summary["options"]["optimizer"] == "muon"
    assert summary["machine"] == {
        "plmlab": importlib.metadata.version("plmlab"), "torch": torch.__version__,
        "python": summary["machine"]["python"], "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpus": train_setup.usable_cpus(), "threads": 1, "device": "cpu"}


def test_final_holds_a_model_card_with_the_runs_numbers(run):
    out = run[0]
    summary = json.loads((out / "summary.json").read_text())
    card = (out / "final" / "README.md").read_text()
    assert card.startswith("# gpt-tiny pretrained with plmlab\n")
    assert f"| parameters | {summary['params']:,} |" in card
    assert f"| training | 4 steps, {summary['tokens']:,} tokens (4 x 32 tokens a step)" in card
    assert f"{summary['val_loss']:.4f} nats/token" in card
    assert f"bigram baseline {summary['baselines']['bigram']['loss']:.4f}" in card
    assert f"plmlab.load_pretrained({str(out / 'final')!r})" in card
    assert f"GPT2LMHeadModel.from_pretrained({str(out / 'final')!r})" in card
    assert not list(out.glob(".tmp-final-*"))


def test_transformers_loads_a_final_folder_that_holds_a_card(run):
    transformers = pytest.importorskip("transformers")
    final = run[0] / "final"
    ours = __import__("plmlab").load_pretrained(final)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(final).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    torch.testing.assert_close(theirs(ids).logits, ours(input_ids=ids).logits, rtol=1e-5, atol=1e-5)


def test_json_keeps_stdout_for_the_result_and_progress_none_is_silent(tmp_path, capsys):
    corpus = write_corpus(tmp_path)
    argv = ["pretrain", "--preset", "gpt-tiny", "--corpus", str(corpus), "--max-steps", "1", "--batch-size", "2",
            "--seq-len", "16", "--eval-batches", "1", "--threads", "1", "--sample-tokens", "0"]
    assert main([*argv, "--out", str(tmp_path / "a"), "--json", "--progress", "plain"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["step"] == 1  # one JSON object: no hints, no summary
    assert "plmlab: model (" in captured.err
    assert main([*argv, "--out", str(tmp_path / "b"), "--json", "--progress", "none"]) == 0
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ the hints fit every family
@pytest.mark.parametrize("preset", ["gpt-tiny", "glm-tiny", "bert-tiny", "roberta-tiny", "t5-tiny", "bart-tiny"])
def test_the_first_hint_runs_on_a_model_of_that_family(preset, tmp_path, capsys):
    config = get_preset(preset)
    torch.manual_seed(0)
    texts = [f"The {w} of a list is its length. A tuple is an ordered sequence." for w in ("size", "end", "head")]
    tokenizer = train_tokenizer(texts * 20, config.tokenizer, 400)
    config = config.replace(vocab_size=tokenizer.vocab_size, bos_token_id=tokenizer.bos_id,
                            eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id)
    save_pretrained(build_model(config).eval(), tmp_path / "m", tokenizer=tokenizer)
    steps = next_steps(config, tmp_path / "m")
    assert len(steps) == 4 and f"plmlab plot {tmp_path / 'm'}" == steps[-1]
    argv = shlex.split(steps[0])[1:]
    if argv[0] == "generate" or argv[0] == "fill-blanks":
        argv += ["--max-new-tokens", "3"]
    assert main(argv) == 0, capsys.readouterr().err  # a verb that does not fit the family refuses: 2


def test_hints_name_the_run_and_quote_odd_paths():
    steps = next_steps(get_preset("t5-tiny"), "my runs/t5/")
    assert steps[0] == "plmlab generate --model 'my runs/t5' \"The <extra_id_0> of a list is its length.\""
    assert steps[2].endswith("--out 'my runs/t5-sentiment'")
    assert next_steps(get_preset("bert-tiny"), "runs/b/final")[2].endswith("--out runs/b-cls")


# ------------------------------------------------------------------ plain progress and its estimate
def test_plain_progress_writes_every_ten_seconds_and_estimates_the_run_early():
    stream, now = io.StringIO(), [100.0]
    progress = Progress("plain", 0, 600, stream=stream, clock=lambda: now[0])
    for step in range(1, 8):
        now[0] += 4.0  # a 4-second step: the 30-step cadence alone would say nothing for 2 minutes
        progress.update({"step": step, "loss": 5.0, "lr": 1e-3, "tokens_per_s": 500.0})
    lines = stream.getvalue().splitlines()
    # after step 2 (8 s): the first step's 4 s, since a lone step is all there is
    assert lines[0] == "step time 4.00 s: about 40:00 for 600 steps (plus evaluations and checkpoints)"
    assert [line.split()[1] for line in lines[1:]] == ["3/600", "6/600"]  # 12 s, then 24 s since the start


def test_the_estimate_of_a_resumed_run_counts_the_steps_left_and_not_the_first_step():
    stream, now = io.StringIO(), [0.0]
    progress = Progress("plain", 300, 400, stream=stream, clock=lambda: now[0])
    for step, took in zip(range(301, 304), (3.0, 0.5, 0.5)):  # the first step warms up
        now[0] += took
        progress.update({"step": step, "loss": 5.0, "lr": 1e-3})
    assert "step time 0.50 s: about 0:50 for 100 steps" in stream.getvalue()


@pytest.mark.parametrize("mode", ["bar", "none"])
def test_bar_and_none_modes_print_no_estimate(mode):
    """The bar shows its own ETA; none is silent."""
    stream = io.StringIO()
    progress = Progress(mode, 0, 10, stream=stream, clock=iter(range(0, 100, 10)).__next__)
    for step in range(1, 6):
        progress.update({"step": step, "loss": 5.0, "lr": 1e-3})
    progress.close()
    assert "step time" not in stream.getvalue() and (mode == "bar") == ("5/10" in stream.getvalue())


# ------------------------------------------------------------------ the default thread count
def test_default_threads_is_torchs_count_within_the_usable_cpus_and_at_most_eight(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 32)  # torch's default: the physical cores
    monkeypatch.setattr(train_setup, "usable_cpus", lambda: 64)
    assert train_setup.default_threads() == 8
    monkeypatch.setattr(train_setup, "usable_cpus", lambda: 3)  # taskset / a container
    assert train_setup.default_threads() == 3
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # OMP_NUM_THREADS=1
    assert train_setup.default_threads() == 1


def test_the_thread_note_warns_when_other_processes_keep_the_cpus_busy(monkeypatch):
    monkeypatch.setattr(train_setup, "usable_cpus", lambda: 2)
    monkeypatch.setattr(train_setup, "busy_cpus", lambda: 1)
    assert train_setup.threads_text(2) == (" with 2 threads (--threads N to change; other processes keep about 1 "
                                           "of the 2 CPUs busy: --threads 1 may be faster)")
    assert train_setup.threads_text(1) == " with 1 thread (--threads N to change)"
    monkeypatch.setattr(train_setup, "busy_cpus", lambda: 0)
    assert train_setup.threads_text(2) == " with 2 threads (--threads N to change)"


def test_busy_cpus_sees_a_process_that_spins():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start
        assert train_setup.busy_cpus() >= 1
    finally:
        spinner.kill()
        spinner.wait()


# ------------------------------------------------------------------ make pretrain needs no test package
BLOCKER = """
import importlib.abc, sys
BLOCKED = set(sys.argv.pop(1).split(","))
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (a test-only package, blocked)")
sys.meta_path.insert(0, Blocked())
from plmlab.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _test_only_modules() -> list[str]:
    """The import names of what the test extra adds to the core and the plot extra (pyproject)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    names = lambda reqs: {re.split(r"[<>=!~ \[]", r)[0].lower().replace("-", "_") for r in reqs}  # noqa: E731
    extras = project["optional-dependencies"]
    return sorted(names(extras["test"]) - names(extras["plot"]) - names(project["dependencies"]))


@pytest.mark.slow
def test_make_pretrain_runs_without_the_test_extra(tmp_path):
    """`make pretrain` installs the core and the plot extra only: pretraining, the built-in suite
    and the plot must not import transformers, lm-eval, fastapi ..."""
    blocked = _test_only_modules()
    assert {"transformers", "lm_eval", "fastapi", "pytest"} <= set(blocked)
    for argv in (["pretrain", "--preset", "gpt-tiny", "--out", str(tmp_path / "r"),
                  "--max-steps", "1", "--batch-size", "2", "--seq-len", "16", "--eval-batches", "1", "--threads", "1",
                  "--suite", "builtin"],
                 ["evaluate", "--model", str(tmp_path / "r"), "--suite", "builtin"],
                 ["plot", str(tmp_path / "r")]):
        done = subprocess.run([sys.executable, "-c", BLOCKER, ",".join(blocked), *argv], capture_output=True,
                              text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-2000:]
        if argv[0] == "pretrain":  # `make pretrain`'s one command ends with the score card, then the hints
            card = done.stdout.index("CORE (mean centered)")
            assert card < done.stdout.index("next:")
            assert json.loads((tmp_path / "r/summary.json").read_text())["score_card"]["core"] is not None
