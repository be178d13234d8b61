"""Every preset's parameter count: exact against transformers' count for the same config
(where transformers has the architecture), and within a few percent of the paper."""

import json
import re

import pytest
import torch

from plmlab import count_parameters
from plmlab.presets import PRESETS, get_preset
from test_generation import run_cli  # `plmlab ...` in process (a subprocess adds only its start-up)

PAPER = {  # headline sizes from the papers (Table 2.1 of GPT-3; LLaMA Table 2; ...)
    "gpt1": 117e6, "gpt2": 124e6, "gpt2-medium": 355e6, "gpt2-large": 774e6, "gpt2-xl": 1.5e9,
    "gpt3-125m": 125e6, "gpt3-350m": 350e6, "gpt3-760m": 760e6, "gpt3-1.3b": 1.3e9, "gpt3-2.7b": 2.7e9,
    "gpt3-6.7b": 6.7e9, "gpt3-13b": 13e9, "gpt3-175b": 175e9,
    "llama-7b": 6.7e9, "llama-13b": 13.0e9, "llama-33b": 32.5e9, "llama-65b": 65.2e9,
    "llama2-7b": 6.7e9, "llama2-13b": 13.0e9, "llama2-70b": 69e9, "llama3-8b": 8.0e9, "llama3-70b": 70.6e9,
    "distilbert-base": 66e6,  # Sanh et al. 2019, section 3
    "bart-base": 140e6, "bart-large": 400e6,  # Lewis et al. 2019, section 3 / table 1 sizes
}


@pytest.mark.parametrize("name", [n for n in PAPER if n in PRESETS])
def test_paper_sizes(name):
    n = count_parameters(get_preset(name))["params"]
    assert abs(n - PAPER[name]) / PAPER[name] < 0.05, (name, n)


@pytest.mark.parametrize("name", [n for n in PRESETS if n.endswith(("-tiny", "-mini"))])
def test_cpu_sizes(name):
    n = count_parameters(get_preset(name))["params"]
    assert (n < 1e6) if name.endswith("-tiny") else (1e6 < n < 20e6), (name, n)


@pytest.mark.parametrize("name", ["gpt2", "gpt1", "llama2-70b", "llama3-8b", "gpt3-175b",
                                  "mistral-7b", "qwen2-0.5b", "qwen2-7b", "glm4-9b-0414", "xlm-mlm-en-2048"])
def test_count_equals_transformers_for_the_same_config(name, tmp_path):
    """The HF config plmlab writes, instantiated by transformers on the meta device."""
    transformers = pytest.importorskip("transformers")
    from plmlab.hf import choose_adapter

    config = get_preset(name)
    hf_config = transformers.AutoConfig.for_model(**choose_adapter(config).config_to_hf(config))
    with torch.device("meta"):
        hf = transformers.AutoModelForCausalLM.from_config(hf_config)
    assert count_parameters(config)["params"] == hf.num_parameters()


@pytest.mark.parametrize("name", ["bart-base", "bart-large"])
def test_bart_count_equals_transformers_plus_the_logits_bias(name):
    """transformers keeps BART's final_logits_bias as a buffer, plmlab as the LM head's bias:
    the counts differ by exactly the vocabulary size."""
    transformers = pytest.importorskip("transformers")
    from plmlab.hf import choose_adapter

    config = get_preset(name)
    hf_config = transformers.AutoConfig.for_model(**choose_adapter(config).config_to_hf(config))
    with torch.device("meta"):
        hf = transformers.AutoModelForSeq2SeqLM.from_config(hf_config)
    assert count_parameters(config)["params"] == hf.num_parameters() + config.vocab_size


def test_info_cli_json_and_human():
    code, out, stderr = run_cli(["info", "llama2-70b", "--json"])
    assert code == 0, stderr
    info = json.loads(out)
    assert info["params"] == count_parameters(get_preset("llama2-70b"))["params"]
    assert info["params_non_embedding"] < info["params"]
    human = run_cli(["info", "gpt2"])[1]
    assert "124,439,808" in human and re.search(r"attention\s+[\d,]+", human)
    code, _, stderr = run_cli(["info", "gtp2"])
    assert code == 2 and stderr.count("\n") == 1 and "did you mean gpt2" in stderr


def _full_depth_counts(config) -> dict:
    """The reference: every block built (on meta), each parameter counted once (tied ones too)."""
    from plmlab.modeling import _MetaWeights, _kind
    from plmlab.models import SKELETONS

    with _MetaWeights():
        model = SKELETONS[config.arch](config)
    counts = {}
    for name, p in model.named_parameters():  # tied parameters come once
        counts[_kind(name)] = counts.get(_kind(name), 0) + p.numel()
    return counts


@pytest.mark.parametrize("name", [*PRESETS, "t5 with stacks of 3 and 5"])
def test_counts_read_off_shallow_models_equal_full_depth_ones(name):
    """count_parameters builds one- and two-layer models and extrapolates (every block of a stack
    has one shape): exact for every preset, and for an encoder-decoder whose stacks differ in depth."""
    config = get_preset(name) if name in PRESETS else get_preset("t5-tiny").replace(n_layers=3, n_decoder_layers=5)
    counts = count_parameters(config)
    by_kind = {k: v for k, v in counts.items() if v and not k.startswith("params")}
    assert by_kind == _full_depth_counts(config)
    assert counts["params"] == sum(by_kind.values())


def test_info_list_prints_every_preset_with_its_count(capsys):
    from plmlab.cli import main

    assert main(["info", "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed.keys() == set(PRESETS)
    assert listed["gpt2"] == 124_439_808 and listed["llama2-70b"] == count_parameters("llama2-70b")["params"]


def test_info_set_sizes_a_variant_as_pretrain_would_build_it(capsys):
    from plmlab.cli import main

    assert main(["info", "llama-mini", "--set", "n_layers=3", "--set", "norm=layernorm", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    variant = get_preset("llama-mini").replace(n_layers=3, norm="layernorm", norm_bias=True)
    assert info["params"] == count_parameters(variant)["params"]
    # switching the norm switches its bias with it (a LayerNorm has one), unless norm_bias is set too
    assert info["config"]["norm_bias"] is True and info["norms"] == (2 * 3 + 1) * 2 * 256
    assert main(["info", "llama-mini", "--set", "norm=layernorm", "--set", "norm_bias=false", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["norm_bias"] is False
    assert main(["info", "gpt2", "--set", "norm=layernorm", "--json"]) == 0  # no switch: GPT-2 keeps its biases
    assert json.loads(capsys.readouterr().out)["config"]["norm_bias"] is True
    assert main(["info", "gpt2", "--set", "n_layer=3"]) == 2  # not a Config field: one line, exit 2
    assert capsys.readouterr().err.count("\n") == 1


def test_info_shows_both_stacks_of_an_encoder_decoder(capsys):
    from plmlab.cli import main

    assert main(["info", "t5-tiny", "--set", "n_decoder_layers=5"]) == 0
    assert "2 encoder + 5 decoder layers" in capsys.readouterr().out
