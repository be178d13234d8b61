"""The studies' paper figures: every number a study quotes from a paper (its `paper` text and the
string templates of its verdict) is a figure of plmlab.experiments.paper_figures for that study,
each arm's figure is quoted, and the corrections of issue 23 stay corrected. No training: the
Experiment objects are built, never run."""

from __future__ import annotations

import ast
import inspect
import re

import pytest

from plmlab.experiments import EXPERIMENTS, SCALES
from plmlab.experiments.paper_figures import FIGURES, cite, rows
from plmlab.experiments.studies import albert, masking, objectives

# A figure is a number with a decimal point, a thousands separator, a % or x, or a size suffix
# ("84.4", "1,000", "7%", "1.7x", "334M", "16GB"); table numbers, layer counts, years and the
# numbers in names ("GPT-2", "top-p-0.9") are not.
FIGURE = re.compile(r"(?<![\w.^])(?<![A-Za-z]-)(\d+(?:,\d{3})+|\d+\.\d+|\d+(?=\s?%|x\b|[kKMBGT]\b|GB\b))")


def figures_in(text: str) -> list[str]:
    return FIGURE.findall(text)


def allowed(study: str) -> set[str]:
    """Every figure-like number in the table rows of `study` (values, rows, model, training)."""
    return {n for f in FIGURES.values() if f.study == study
            for field in (f.value, f.row, f.metric, f.source.where, f.source.model, f.source.training)
            for n in figures_in(field)}


def unknown_figures(study: str, text: str) -> list[str]:
    return [n for n in figures_in(text) if n not in allowed(study)]


def module_strings(source: str) -> list[str]:
    """The string constants of a module (f-string parts included), less docstrings and the study's
    own runtime estimate."""
    tree = ast.parse(source)
    skip = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    skip |= {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.keyword) and node.arg == "runtime"}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip]


def literal_keys(source: str) -> list[str]:
    """Keys passed as literals to v(...) or cite(...)."""
    return [arg.value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("v", "cite")
            for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]


def study_source(name: str) -> str:
    return inspect.getsource(inspect.getmodule(EXPERIMENTS[name].summarize))


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_paper_text_quotes_only_table_figures(name):
    assert unknown_figures(name, EXPERIMENTS[name].paper) == []


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_verdict_templates_quote_only_table_figures(name):
    source = study_source(name)
    assert [s for s in module_strings(source) if unknown_figures(name, s)] == []
    keys = literal_keys(source)
    assert all(FIGURES[k].study == name for k in keys), [k for k in keys if FIGURES[k].study != name]


@pytest.mark.parametrize("name", sorted({f.study for f in FIGURES.values()}))
def test_every_figure_is_quoted_and_every_arm_exists(name):
    paper, keys = EXPERIMENTS[name].paper, set(literal_keys(study_source(name)))
    arm_names = {arm.name for scale in SCALES for arm in EXPERIMENTS[name].arms(scale)}
    for key, f in FIGURES.items():
        if f.study == name:
            assert f"{f.value} ({f.row})" in paper or key in keys, key
            assert f.arm is None or f.arm in arm_names, (key, f.arm)


def test_every_arm_with_a_paper_row_quotes_it_in_the_paper_text():
    for key, f in FIGURES.items():
        if f.arm is not None:
            assert f"{f.value} ({f.row})" in EXPERIMENTS[f.study].paper, key


def test_each_cited_source_names_its_table_model_and_training():
    for key, f in FIGURES.items():
        paper = EXPERIMENTS[f.study].paper
        if f"{f.value} ({f.row})" in paper:
            for part in (f.source.paper, f.source.where, f.source.model, f.source.training):
                assert part in paper, (key, part)
    assert len(rows()) == len(FIGURES) and all(len(r) == 11 and all(r[:10]) for r in rows())


def test_planted_wrong_figure_is_caught():
    paper = EXPERIMENTS["masking"].paper
    assert unknown_figures("masking", paper.replace("84.4", "84.1")) == ["84.1"]
    assert unknown_figures("activations", EXPERIMENTS["activations"].paper.replace("1.679", "1.669")) == ["1.669"]
    planted = 'verdict = f"BERT found MNLI 84.1 for 80/0/20 ({x})"\n'
    flagged = [s for s in module_strings(planted) if unknown_figures("masking", s)]
    assert flagged == ["BERT found MNLI 84.1 for 80/0/20 ("]
    with pytest.raises(KeyError):
        cite("bert-t8/80-0-20/mnli")  # not a row of the table: a study cannot cite it


# ---------------------------------------------------------------- the five corrections of issue 23
def test_masking_unchanged_arm_gets_the_80_20_0_row():
    # the arm's options are (MASK, random, unchanged); Table 8's columns are MASK, SAME, RND
    assert masking.ARMS["80-0-20"]["replace_probs"] == [0.8, 0.0, 0.2]
    arm_rows = {k: f for k, f in FIGURES.items() if f.arm == "80-0-20" and k.startswith("bert-t8/")}
    assert {f.metric: f.value for f in arm_rows.values()} == {"MNLI dev accuracy, fine-tuned": "84.4",
                                                              "CoNLL-2003 NER dev F1, feature-based": "94.7"}
    paper = EXPERIMENTS["masking"].paper
    assert "84.4 (80 % [MASK] + 20 % unchanged)" in paper and "84.1" not in paper


def test_albert_quotes_the_equal_width_speed_up():
    paper = EXPERIMENTS["albert"].paper
    assert "1.7x (ALBERT-large)" in paper and "18M (ALBERT-large)" in paper and "334M (BERT-large)" in paper
    assert "v('albert-t2/albert-large/speed')" in inspect.getsource(albert.summarize)


def test_activations_quotes_both_training_lengths():
    paper = EXPERIMENTS["activations"].paper
    relu, gelu = FIGURES["shazeer-t1/relu/524,288"].value, FIGURES["shazeer-t1/gelu/524,288"].value
    assert (relu, gelu) == ("1.677", "1.679") and float(gelu) > float(relu)  # GELU behind ReLU at 524k steps
    assert "after 65,536 steps" in paper and "after 524,288 steps" in paper
    assert f"{gelu} (FFN_GELU)" in paper and f"{relu} (FFN_ReLU)" in paper


def test_objectives_83_28_is_table_2_and_table_4_bert_style_is_82_96():
    paper = EXPERIMENTS["objectives"].paper
    assert "83.28 (Table 2: encoder-decoder, span corruption)" in paper
    assert "82.96 (Table 4: BERT-style denoising)" in paper and "80.69 (Table 4: prefix LM)" in paper
    assert "table 4" in inspect.getsource(objectives.summarize)


def test_vocab_quotes_roberta_section_4_4():
    paper = EXPERIMENTS["vocab"].paper
    assert "section 4.4" in paper and "slightly worse on some tasks" in paper and "50K" in paper
