"""Objectives declare themselves: their options (a dataclass each, from which --objective-set,
`plmlab objective --set` and the pretrain flags are read), the models they fit, their demo and
the facts the trainer needs. Bad values are one line before any work."""

from __future__ import annotations

import dataclasses

import pytest

from plmlab.cli import build_parser, main
from plmlab.cli.pretrain import options_from_args
from plmlab.cli.pretrain_objective import objective_flags
from plmlab.errors import PlmlabError
from plmlab.objectives import OBJECTIVES, get_objective
from plmlab.objectives.options import ObjectiveOptions, option
from plmlab.presets import get_preset
from plmlab.train.demo import DEMOS
from plmlab.train.objective_setup import accepted_options, check_objective_fits, check_objective_options

BAD_SETS = [
    ("ngram=x", "objective mlm: ngram must be an integer, got 'x'"),
    ("mask_prob=nan", "objective mlm: mask_prob must be in [0, 1), got nan"),
    ("mask_prob=2", "objective mlm: mask_prob must be in [0, 1), got 2.0"),
    ("mask_probability=0.2", "objective mlm has no option mask_probability (its options: input_format,"),
    ("whole_word=3", "objective mlm: whole_word must be true or false, got 3"),
    ("masking=sometimes", "objective mlm: masking must be one of static, dynamic, macbert, phrase, entity, staged, "
                         "got 'sometimes'"),
    ("static_copies=0", "objective mlm: static_copies must be >= 1, got 0"),
    ("replace_probs=[0.8,0.1]", "replace_probs must be three probabilities summing to 1"),
]


@pytest.mark.parametrize("item,message", BAD_SETS, ids=[b[0] for b in BAD_SETS])
def test_bad_objective_set_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, item, message):
    import plmlab.train.pretrain_setup as pretrain_setup

    monkeypatch.setattr(pretrain_setup, "make_tokenizer", _no_work)
    out = tmp_path / "r"
    code = main(["pretrain", "--preset", "bert-tiny", "--objective", "mlm", "--out", str(out), "--objective-set", item])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"plmlab: error: {message}")
    assert not (out / "metrics.jsonl").exists()


@pytest.mark.parametrize("flags,message", [
    (["--ngram", "x"], "ngram must be an integer, got 'x'"),
    (["--mask-prob", "nan"], "mask_prob must be in [0, 1), got nan"),
    (["--static-copies", "2.5"], "static_copies must be an integer, got '2.5'"),
])
def test_bad_flag_values_are_one_line_not_a_usage_dump(tmp_path, capsys, monkeypatch, flags, message):
    import plmlab.train.pretrain_setup as pretrain_setup

    monkeypatch.setattr(pretrain_setup, "make_tokenizer", _no_work)
    code = main(["pretrain", "--preset", "bert-tiny", "--objective", "mlm", "--out", str(tmp_path / "r"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err


def _no_work(*args, **kwargs):
    raise AssertionError("a tokenizer was trained before the objective's options were checked")


def test_library_checks_values_like_the_cli():
    with pytest.raises(PlmlabError, match=r"objective glm: mask_ratio must be in \(0, 0.5\], got 0.7"):
        check_objective_options("glm", {"mask_ratio": 0.7})
    with pytest.raises(PlmlabError, match="objective span-corruption: noise_density must be a number, got True"):
        check_objective_options("span-corruption", {"noise_density": True})
    with pytest.raises(PlmlabError, match="objective glm-mix: max_span must be an integer, got 2.5"):
        check_objective_options("glm-mix", {"max_span": 2.5})
    with pytest.raises(PlmlabError, match="objective mixture: span_rate must be >= 0, got -1.0"):
        check_objective_options("mixture", {"span_rate": -1})
    check_objective_options("mlm", {"mask_prob": "0.3", "ngram": 2, "input_format": None})  # text numbers parse


def test_options_are_one_dataclass_per_objective():
    for name, cls in OBJECTIVES.items():
        assert dataclasses.is_dataclass(cls.Options) and issubclass(cls.Options, ObjectiveOptions)
        assert accepted_options(cls) == {f.name for f in dataclasses.fields(cls.Options)}
        assert all(rule.help for rule in cls.Options.rules().values())  # one line of help each
        defaults = cls.parse_options({})  # its own defaults pass its own checks
        assert all(getattr(defaults, k) == v for k, v in cls.option_defaults.items())
    assert get_objective("mlm+sop").parse_options({}).ngram == 3 and get_objective("mlm").parse_options({}).ngram == 1


def test_pretrain_flags_are_generated_from_the_declared_options():
    flags = objective_flags()
    assert {"--mask-prob", "--ngram", "--whole-word", "--masking", "--static-copies", "--input-format",
            "--noise-density", "--mean-span-length"} <= set(flags)
    for flag, (name, rule, objectives) in flags.items():
        assert all(OBJECTIVES[o].Options.rules()[name] == rule for o in objectives)
    o = options_from_args(build_parser().parse_args(["pretrain", "--out", "x", "--ngram", "3", "--whole-word"]))
    assert o.objective_options == {"ngram": 3, "whole_word": True}

    @dataclasses.dataclass
    class Extra(ObjectiveOptions):  # a new option declares its own range and help: nothing else to write
        depth: int = option(2, int, "a new knob", low=1, high=4)

    with pytest.raises(PlmlabError, match=r"objective x: depth must be in \[1, 4\], got 9"):
        Extra.parse({"depth": 9}, "x")


FITS = [("clm", "gpt-tiny"), ("clm", "llama-tiny"), ("clm", "glm4-tiny"), ("mlm", "bert-tiny"), ("mlm", "roberta-tiny"),
        ("mlm+nsp", "bert-tiny"), ("mlm+sop", "albert-tiny"), ("sop", "albert-tiny"), ("nsp", "bert-tiny"),
        ("span-corruption", "t5-tiny"), ("mixture", "t5-tiny"), ("glm", "glm-tiny"), ("glm-mix", "glm-tiny")]
MISFITS = [("clm", "t5-tiny", "an encoder-decoder", "gpt-tiny"), ("clm", "bert-tiny", "an encoder", "gpt-tiny"),
           ("span-corruption", "gpt-tiny", "a decoder", "t5-tiny"), ("glm", "bert-tiny", "an encoder", "glm-tiny"),
           ("glm", "glm4-tiny", "rotary positions", "glm-tiny"), ("mlm", "gpt-tiny", "a decoder", "bert-tiny"),
           ("mlm+nsp", "roberta-tiny", "no pair head", "bert-tiny"), ("mixture", "llama-tiny", "a decoder", "t5-tiny")]


def test_objectives_declare_the_models_they_fit():
    for name, preset in FITS:
        check_objective_fits(name, get_preset(preset))
    for name, preset, why, example in MISFITS:
        with pytest.raises(PlmlabError) as e:
            check_objective_fits(name, get_preset(preset))
        message = str(e.value)
        assert "\n" not in message and message.startswith(f"objective {name} does not fit this model ({why}")
        assert example in message.split("e.g. ")[1]  # names presets that fit


@pytest.mark.parametrize("preset,objective", [("t5-tiny", "clm"), ("gpt-tiny", "span-corruption"),
                                              ("bert-tiny", "glm"), ("gpt-tiny", "mlm")])
def test_pretrain_refuses_an_objective_that_does_not_fit_before_any_work(tmp_path, capsys, monkeypatch, preset,
                                                                         objective):
    import plmlab.train.pretrain_setup as pretrain_setup

    monkeypatch.setattr(pretrain_setup, "make_tokenizer", _no_work)
    out = tmp_path / "r"
    assert main(["pretrain", "--preset", preset, "--objective", objective, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"plmlab: error: objective {objective} does not fit this model") and err.count("\n") == 1
    assert not (out / "metrics.jsonl").exists()


def test_objectives_declare_what_the_trainer_and_the_demos_read():
    for name, cls in OBJECTIVES.items():
        assert cls.needs_eos is cls.causal_lm_baselines is (name == "clm")  # causal LM packs documents with EOS
        assert cls.demo is None or cls.demo in DEMOS
    assert {n: c.demo for n, c in OBJECTIVES.items() if c.demo} == {
        "mlm": "fill-mask", "mlm+nsp": "fill-mask", "mlm+sop": "fill-mask", "span-corruption": "span-filling",
        "mixture": "span-filling", "glm": "fill-blanks", "glm-smask": "fill-blanks", "glm-gmask": "fill-blanks",
        "glm-mix": "fill-blanks"}


def test_objective_verb_refuses_a_bad_option_before_loading_a_tokenizer(capsys, monkeypatch):
    import plmlab.tokenizers as tokenizers

    monkeypatch.setattr(tokenizers, "builtin_tokenizer", _no_work)
    for item, message in [("ngram=x", "objective mlm: ngram must be an integer, got 'x'"),
                          ("mask_prob=nan", "objective mlm: mask_prob must be in [0, 1), got nan"),
                          ("foo=1", "unknown option(s) for objective mlm: foo (its options: input_format,")]:
        assert main(["objective", "mlm", "--text", "a b c", "--set", item]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"plmlab: error: {message}") and err.count("\n") == 1
