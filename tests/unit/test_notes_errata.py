"""docs/notes-errata.md, the page that corrects the course notes, and `plmlab info`'s pointer to it.

The page quotes numbers a learner will check; these tests recompute each one that plmlab or torch
can compute: the output blocks under its commands are what those commands print, the GELU values
are torch's, and every count or shape in the prose is plmlab's.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from plmlab import count_parameters
from plmlab.cli import main
from plmlab.cli.info import NOTES_ERRATA, errata_anchor
from plmlab.presets import get_preset
from test_docs_commands import shell_commands

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "notes-errata.md").read_text(encoding="utf-8")
# A ```bash block directly followed by a plain ``` block: the commands and what the page says they print.
COMMAND_AND_OUTPUT = re.compile(r"^```bash\n(.*?)^```\n\n```\n(.*?)^```", re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors() -> set[str]:
    return {slug(line.lstrip("#")) for line in PAGE.splitlines() if line.startswith("#")}


def on_page(text: str) -> bool:
    """Whether the page says `text`, with a typographic minus read as '-' and line breaks as spaces."""
    return text in re.sub(r"\s+", " ", PAGE.replace("\u2212", "-"))


def test_every_anchor_that_plmlab_info_points_to_is_a_heading_of_the_page():
    missing = sorted(set(NOTES_ERRATA.values()) - anchors())
    assert not missing, f"docs/notes-errata.md has no heading for {missing}"
    assert errata_anchor("bert-mini") == NOTES_ERRATA["bert-"]
    assert errata_anchor("t5-11b") == NOTES_ERRATA["t5-11b"]  # the longest prefix wins over "t5-"
    assert errata_anchor("distilbert-base") is None and errata_anchor("mistral-7b") is None


def test_info_prints_the_pointer_in_human_output_only(capsys):
    assert main(["info", "bert-base"]) == 0
    assert f"notes errata: docs/notes-errata.md#{NOTES_ERRATA['bert-']}" in capsys.readouterr().out
    assert main(["info", "bert-base", "--json"]) == 0
    assert "errata" not in capsys.readouterr().out
    assert main(["info", "mistral-7b"]) == 0
    assert "errata" not in capsys.readouterr().out


def run_command(words: list[str]) -> str:
    """What one command of the page prints: plmlab's verbs in-process, `python -c CODE ARGS` exec'd
    with its own argv (under a forked RNG, so a seeded command leaves the suite's RNG alone)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if words[0] == "plmlab":
            assert main(words[1:]) == 0
        else:
            assert words[:2] == ["python", "-c"], words
            argv = sys.argv
            sys.argv = ["-c", *words[3:]]
            try:
                with torch.random.fork_rng():
                    exec(words[2], {"__name__": "__main__"})
            finally:
                sys.argv = argv
    return out.getvalue()


@pytest.mark.parametrize("block", range(len(COMMAND_AND_OUTPUT.findall(PAGE))))
def test_each_quoted_output_is_what_its_commands_print(block):
    commands, quoted = COMMAND_AND_OUTPUT.findall(PAGE)[block]
    printed = "".join(run_command(words) for words in shell_commands(f"```bash\n{commands}```\n"))
    for line in quoted.splitlines():
        assert line in printed.splitlines(), f"the page quotes {line!r}; the commands printed:\n{printed}"


def test_the_gelu_numbers_are_torchs():
    x = torch.tensor(-3.0, dtype=torch.float64)
    as_written = 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi)) * (x + 0.044715 * x**3))
    tanh_gelu = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    assert torch.allclose(tanh_gelu, F.gelu(x, approximate="tanh"))
    assert on_page(f"the formula gives **{as_written:.2f}** at x = -3")
    assert on_page(f"GELU there is **{tanh_gelu:.4f}** (tanh form) or **{F.gelu(x):.4f}** (exact)")
    assert f"{as_written:.2f}" == "2.68" and f"{F.gelu(x):.3f}" == "-0.004"  # the figures


def test_the_counts_in_the_prose_are_plmlabs():
    bert = count_parameters("bert-base")["params"]
    positions = get_preset("bert-base").max_positions * get_preset("bert-base").d_model
    assert on_page(f"512 × 768 = {positions:,} parameters ({100 * positions / bert:.2f} % of BERT-base)")
    for size in ("base", "large"):
        before = count_parameters(f"bert-{size}")["params"]
        after = count_parameters(get_preset(f"bert-{size}").replace(vocab_size=50265))["params"]
        assert on_page(f"{before:,} -> {after:,} in {size}, {after - before:,} more")
    llama = get_preset("llama-7b")
    mlp = llama.n_layers * 3 * llama.d_model * llama.d_ff
    assert mlp == count_parameters(llama)["mlp"]
    assert on_page(f"`mlp {mlp:,}` = 32 layers × 3 matrices × 4096 × 11008")
    t5 = count_parameters("t5-11b")["params"]
    assert on_page(f"`parameters: {t5:,} ({t5 / 1e9:.2f}B)`")


@pytest.mark.parametrize("label, preset",
                         [("GPT-1", "gpt1"), ("GPT-2 (largest)", "gpt2-xl"), ("GPT-3 (175B)", "gpt3-175b")])
def test_the_corrected_gpt_table_matches_the_presets(label, preset):
    c = get_preset(preset)
    row = f"| {label} | {c.n_layers} | {c.d_model} | {c.n_heads} | {c.d_model // c.n_heads} | {c.d_ff} |"
    assert row in PAGE


def test_the_norm_analogy_numbers_are_what_the_norms_compute():
    scores = torch.tensor([50.0, 80.0, 90.0])
    rms = scores.pow(2).mean().sqrt()
    layer = ", ".join(f"{v:.2f}" for v in F.layer_norm(scores, (3,)))
    root = ", ".join(f"{v:.2f}" for v in scores / rms)
    assert on_page(f"LayerNorm gives [{layer}]") and on_page(f"root mean square ({rms:.1f}), giving [{root}]")
