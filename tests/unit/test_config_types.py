"""Config values are type-checked from the dataclass annotations: a YAML or JSON value of the wrong
type is one line naming the field (Config, `plmlab pretrain --config FILE`), never a traceback."""

import math

import numpy as np
import pytest

import plmlab
from plmlab import Config, PlmlabError
from plmlab.cli import main


@pytest.mark.parametrize("fields,needle", [
    (dict(d_model="abc"), "d_model must be an integer, got 'abc' (a string)"),
    (dict(n_layers=2.7), "n_layers must be an integer, got 2.7"),
    (dict(n_layers=2.0), "n_layers must be an integer, got 2.0"),
    (dict(n_layers=None), "n_layers must be an integer, got null"),
    (dict(n_heads=True), "n_heads must be an integer, got true"),
    (dict(n_kv_heads="2"), "n_kv_heads must be an integer"),
    (dict(norm_eps="x"), "norm_eps must be a finite number, got 'x'"),
    (dict(norm_eps=math.nan), "norm_eps must be a finite number, got nan"),
    (dict(rope_theta=math.inf), "rope_theta must be a finite number, got inf"),
    (dict(dropout=False), "dropout must be a finite number, got false"),
    (dict(attn_scale="1"), "attn_scale must be a finite number"),
    (dict(tie_embeddings=1), "tie_embeddings must be true or false, got 1"),
    (dict(tie_embeddings="yes"), "tie_embeddings must be true or false"),
    (dict(norm=3), "norm must be a string, got 3"),
    (dict(label_names=["a", 2]), "label_names must be a list of strings"),
    (dict(rope_scaling=[8.0]), "rope_scaling must be an object, got a list"),
    (dict(notes=None), "notes must be an object, got null"),
    (dict(rope_scaling={"rope_type": "yarn", "factor": 4.0}), "rope_scaling type 'yarn' is not supported"),
    (dict(rope_scaling={"rope_type": "llama3", "factor": 8.0}),
     "rope_scaling low_freq_factor must be a finite number, got null"),
    (dict(rope_scaling={"type": "llama3", "factor": "8", "low_freq_factor": 1, "high_freq_factor": 4,
                        "original_max_position_embeddings": 8192}),
     "rope_scaling factor must be a finite number, got '8'"),
    (dict(rope_scaling={"rope_type": "llama3", "factor": 0, "low_freq_factor": 1, "high_freq_factor": 4,
                        "original_max_position_embeddings": 8192}), "rope_scaling factor must be positive, got 0"),
])
def test_wrong_types_are_one_line_naming_the_field(fields, needle):
    with pytest.raises(PlmlabError) as e:
        Config(**fields)
    assert str(e.value).startswith(f"invalid config: {needle}") and "\n" not in str(e.value)


def test_optional_fields_take_null_ints_become_floats_and_numpy_scalars_python_numbers():
    c = Config(n_kv_heads=None, head_dim=None, attn_scale=None, rope_theta=500000, init_std=np.float32(0.5),
               d_model=np.int64(64), n_heads=4)
    assert type(c.rope_theta) is float and c.rope_theta == 500000.0
    assert type(c.d_model) is int and type(c.init_std) is float
    assert Config.from_dict(c.to_dict()) == c


def test_from_dict_wants_an_object():
    with pytest.raises(PlmlabError, match="expected an object of Config fields, got a list"):
        Config.from_dict([("d_model", 64)])


def test_count_parameters_takes_a_preset_name_like_build_model():
    by_name = plmlab.count_parameters("gpt2")
    assert by_name == plmlab.count_parameters(plmlab.presets.get_preset("gpt2"))
    assert 124e6 < by_name["params"] < 125e6  # GPT-2 small, tied output
    assert plmlab.count_parameters("gpt-tiny", n_layers=1)["params"] < plmlab.count_parameters("gpt-tiny")["params"]
    with pytest.raises(PlmlabError, match="unknown preset"):
        plmlab.count_parameters("gpt-2-small")


@pytest.mark.parametrize("text,needle", [
    ('d_model: "abc"\n', "d_model must be an integer, got 'abc'"),
    ("n_layers: 2.7\n", "n_layers must be an integer, got 2.7"),
    ("n_layers: null\n", "n_layers must be an integer, got null"),
    ("norm_eps: x\n", "norm_eps must be a finite number, got 'x'"),
    ("norm_eps: .nan\n", "norm_eps must be a finite number, got nan"),
    ("tie_embeddings: 0\n", "tie_embeddings must be true or false, got 0"),
])
def test_pretrain_config_yaml_with_a_wrong_type(tmp_path, capsys, text, needle):
    config = tmp_path / "model.yaml"
    config.write_text("arch: decoder\n" + text)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one small sentence.\n")
    run = tmp_path / "run"
    code = main(["pretrain", "--config", str(config), "--corpus", str(corpus), "--out", str(run), "--max-steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("plmlab: error: ") and needle in err and err.count("\n") == 1, err
    assert not any((run / name).exists() for name in ("metrics.jsonl", "checkpoints", "final"))  # no work done
