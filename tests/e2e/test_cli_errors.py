"""Bad input on the command line: one line on stderr (`plmlab: error: ...`), exit status 2, and
nothing already written lost. Values are refused while parsing, before any model is loaded."""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys

import pytest
import torch

import plmlab
from plmlab.cli import VERBS, main
from plmlab.cli import args as cli_args
from plmlab.tokenizers import train_tokenizer


def one_line_error(capsys, argv: list[str], *needles: str) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("plmlab: error: ") and err.count("\n") == 1, err
    assert captured.out == ""
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("argv,needle", [
    (["generate", "--model", "M", "--max-new-tokens", "abc"], "'abc' is not an integer"),
    (["generate", "--prompt", "hi"], "--model"),  # a missing argument
    (["generate", "--model", "M", "--temperature", "nan"], "finite"),
    (["generate", "--model", "M", "--length-penalty", "nan"], "finite"),
    (["generate", "--model", "M", "--top-p", "2"], "[0, 1]"),
    (["generate", "--model", "M", "--seed", "-1"], "[0, 2**63)"),
    (["generate", "--model", "M", "--seed", str(2**63)], "[0, 2**63)"),
    (["generate", "--model", "M", "--device", "bogus"], "'bogus' is not a device"),
    (["generate", "--model", "M", "--num-beams", "0"], "positive"),
    (["generate", "--model", "M", "--repetition-penalty", "inf"], "finite"),
    (["fill-mask", "--model", "M", "--top-k", "0", "a [MASK]"], "positive"),
    (["fill-mask", "--model", "M", "--device", "cuda:99", "a [MASK]"], "cuda:99"),
    (["fill-blanks", "--model", "M", "--temperature", "-1"], ">= 0"),
    (["fill-blanks", "--model", "M", "--seed", "x"], "not an integer"),
    (["classify", "--model", "M", "--device", "tpu", "a"], "tpu"),
    (["tag", "a"], "--model"),
    (["tokenizer", "train", "--out", "x", "--vocab-size", "-5"], "positive"),
    (["plot", "run", "--smooth", "-1"], "non-negative"),
    (["evaluate"], "--model --compare is required"),
    (["evaluate", "--model", "M", "--suite", "builtin", "--shots", "0,-1"], "non-negative"),
    (["no-such-verb"], "invalid choice"),
])
def test_usage_errors_are_one_line(capsys, argv, needle):
    verb = argv[0] if argv[0] in VERBS and argv[0] != "tokenizer" else None
    err = one_line_error(capsys, argv, needle)
    assert f"(see plmlab{' ' + verb if verb else ''}" in err and "usage:" not in err


def test_types_accept_good_values_and_refuse_the_rest():
    assert cli_args.seed("0") == 0 and cli_args.seed(str(2**63 - 1)) == 2**63 - 1
    assert cli_args.finite_float("1e-3") == 1e-3 and cli_args.probability("1") == 1.0
    assert cli_args.non_negative_int("0") == 0 and cli_args.device("cpu") == "cpu" and cli_args.device("auto")
    for kind, bad in [(cli_args.positive_int, "-5"), (cli_args.positive_int, "0"), (cli_args.finite_float, "-inf"),
                      (cli_args.non_negative_float, "nan"), (cli_args.positive_float, "0"),
                      (cli_args.probability, "-0.1"), (cli_args.seed, "1.5"), (cli_args.device, "cuda:x")]:
        with pytest.raises(argparse.ArgumentTypeError):
            kind(bad)
    if not torch.cuda.is_available():
        with pytest.raises(argparse.ArgumentTypeError, match="no CUDA"):
            cli_args.device("cuda")


def test_help_still_exits_zero(capsys):
    with pytest.raises(SystemExit) as done:
        main(["generate", "--help"])
    assert done.value.code == 0 and "--temperature" in capsys.readouterr().out


def help_of(capsys, verb: str) -> dict[str, str]:
    """`plmlab VERB --help` as {option: its help text, wrapped lines joined}."""
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    entries: dict[str, str] = {}
    for line in capsys.readouterr().out.split("options:", 1)[1].splitlines():
        if line.startswith("  -"):
            name, _, text = line.strip().partition(" ")
            entries[name], last = text.strip(), name
        elif line.startswith(" "):  # a wrapped line (a group's heading starts at column 0)
            entries[last] = f"{entries[last]} {line.strip()}".strip()
    return entries


def test_help_shows_every_default_once(capsys):
    dpo = help_of(capsys, "dpo")
    assert dpo["--beta"].endswith("(default: 0.1)") and dpo["--batch-size"].endswith("(default: 8)")
    assert "(default: 1, or more for a small data set" in dpo["--epochs"] and dpo["--epochs"].count("default") == 1
    assert "(default: 1e-05 x 768 / the model's width" in dpo["--lr"]  # derived by the run: said, not shown as None
    assert dpo["--seed"].endswith("(default: 0)") and dpo["--lora-targets"].endswith("(default: attention,mlp)")
    assert "default" not in dpo["--truncate"] and "default" not in dpo["--lora-r"]  # a flag, None: nothing to show
    sft = help_of(capsys, "sft")
    assert sft["--warmup"].endswith("(default: 0.05)") and "(default: 3, or more" in sft["--epochs"]
    assert sft["--data"].count("default") == 1  # its help speaks of its default already
    pretrain = help_of(capsys, "pretrain")
    for option in ("--lr", "--objective", "--schedule"):  # pretrain writes its own "(default X)": not doubled
        assert "(default " in pretrain[option] and "(default:" not in pretrain[option], pretrain[option]


@pytest.fixture(scope="module")
def gpt_dir(tmp_path_factory):
    """A gpt-tiny as large as its tokenizer, and one of 100 embeddings saved with the same tokenizer."""
    tok = train_tokenizer(["the cat sat on the mat.", "a dog ran in the park."] * 20, "gpt2", vocab_size=300)
    folder = tmp_path_factory.mktemp("gpt")
    torch.manual_seed(0)
    plmlab.save_pretrained(plmlab.build_model("gpt-tiny", vocab_size=tok.vocab_size, max_positions=32),
                           folder / "ok", tokenizer=tok)
    plmlab.save_pretrained(plmlab.build_model("gpt-tiny", vocab_size=100, max_positions=32), folder / "small",
                           tokenizer=tok)
    return folder


def test_generate_with_a_tokenizer_past_the_vocabulary(gpt_dir, capsys):
    n = plmlab.load_tokenizer(gpt_dir / "ok").vocab_size
    one_line_error(capsys, ["generate", "--model", str(gpt_dir / "small"), "--prompt", "the cat"],
                   f"{n} ids", "100 embeddings", "do not belong")


@pytest.mark.parametrize("verb", [["generate", "hi"], ["chat"], ["fill-mask", "a [MASK]"], ["fill-blanks", "a"],
                                  ["classify", "a"], ["tag", "a"], ["evaluate", "--suite", "builtin"]])
def test_a_hub_id_says_that_plmlab_never_downloads(verb, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no ./gpt2 here
    for model, local in (("gpt2", "gpt2"), ("openai-community/gpt2", "gpt2")):
        one_line_error(capsys, [verb[0], "--model", model, *verb[1:]], f"{model}: no such checkpoint directory",
                       "plmlab never downloads", f"huggingface-cli download {model} --local-dir {local}",
                       f"save_pretrained('{local}')", f"./{local})")
    err = one_line_error(capsys, [verb[0], "--model", "./gpt2", *verb[1:]], "./gpt2: no such checkpoint directory")
    assert "download" not in err  # a path, not a hub id


def test_a_hub_id_as_the_tokenizer_or_through_the_library(gpt_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    one_line_error(capsys, ["generate", "--model", str(gpt_dir / "ok"), "--tokenizer", "gpt2", "hi"],
                   "gpt2: no such tokenizer directory", "plmlab never downloads")
    with pytest.raises(plmlab.PlmlabError, match="plmlab never downloads"):
        plmlab.load_pretrained("gpt2")


def test_a_prompt_that_is_not_utf8(gpt_dir, monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("fine\nbad \udcff byte\n"))  # a C locale's surrogateescape
    one_line_error(capsys, ["generate", "--model", str(gpt_dir / "ok"), "--max-new-tokens", "2"], "not valid UTF-8")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}  # a UTF-8 locale: stdin decoding itself fails
    done = subprocess.run([sys.executable, "-m", "plmlab", "generate", "--model", str(gpt_dir / "ok"),
                           "--max-new-tokens", "2"], input=b"ok\n\xff\xfe bad\n", capture_output=True, env=env)
    err = done.stderr.decode()
    assert done.returncode == 2 and err.startswith("plmlab: error: stdin is not valid UTF-8") and err.count("\n") == 1


def test_a_failed_write_is_one_line_and_keeps_what_was_there(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat.\na dog ran in the park.\n" * 30)
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    one_line_error(capsys, ["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "300",
                            "--out", str(blocker / "tok")], str(blocker))
    assert blocker.read_text() == "keep me"


def test_ulimit_f_is_one_line_not_a_traceback(tmp_path, capsys):
    """Past `ulimit -f` a write fails with EFBIG, reported as one line. The kernel's SIGXFSZ would
    kill the process without a word: CPython ignores it at start-up, and main() makes sure of it
    (an embedding interpreter may start without signal handlers). Byte-code writes are off in the
    child: they would meet the limit first."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"word{i} other{i % 7} thing{i % 13}.\n" for i in range(400)))
    limit = 4096  # tokenizer.json of 500 ids is far larger
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-m", "plmlab", "tokenizer", "train", "--corpus", str(corpus),
                           "--vocab-size", "500", "--out", str(tmp_path / "tok")], capture_output=True, text=True,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)), env=env)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.startswith("plmlab: error: ") and done.stderr.count("\n") == 1
    assert "File too large" in done.stderr and "ulimit -f" in done.stderr
    before = signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    try:
        main(["info", "gpt-tiny", "--json"])
        assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGXFSZ, before)
    capsys.readouterr()


@pytest.mark.parametrize("argv", [
    ["pretrain"],  # no --preset: refused once the run directory is locked
    ["finetune", "--model", "no-such-model", "--task", "classification", "--train", "train.csv"],
])
def test_a_refused_run_leaves_no_directory_behind(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.csv").write_text("text,label\na b,x\nc d,y\n")
    one_line_error(capsys, [*argv, "--out", "runs/new"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.csv"]
