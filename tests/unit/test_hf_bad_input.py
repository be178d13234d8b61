"""Hand-edited or foreign config.json files, and run directories whose newest checkpoint is broken:
each is one PlmlabError line naming the file and the key, through the library and `plmlab info`."""

import json
import shutil

import pytest
import torch

import plmlab
from plmlab import PlmlabError
from plmlab.cli import main

# (preset, save format, overrides) of one tiny checkpoint per config translation
LAYOUTS = {
    "gpt2": ("gpt-tiny", "auto", {}),
    "openai-gpt": ("gpt-tiny", "openai-gpt", dict(norm_placement="post", final_norm=False, d_ff=256)),
    "llama": ("llama-tiny", "auto", {}),
    "glm": ("glm4-tiny", "auto", {}),
    "chatglm": ("glm4-tiny", "chatglm", {}),
    "bert": ("bert-tiny", "auto", {}),
    "roberta": ("roberta-tiny", "auto", {}),
    "albert": ("albert-tiny", "auto", {}),
    "t5": ("t5-tiny", "auto", {}),
    "plmlab": ("glm-tiny", "auto", {}),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = {}
    for model_type, (preset, fmt, overrides) in LAYOUTS.items():
        torch.manual_seed(0)
        model = plmlab.build_model(preset, vocab_size=96, **overrides)
        out[model_type] = plmlab.save_pretrained(model, tmp_path_factory.mktemp(model_type), format=fmt)
        assert json.loads((out[model_type] / "config.json").read_text())["model_type"] == model_type
    return out


def edited(saved, tmp_path, model_type, edit):
    """A copy of the saved checkpoint whose config.json `edit(config)` changed (or replaced)."""
    path = shutil.copytree(saved[model_type], tmp_path / model_type)
    config = json.loads((path / "config.json").read_text())
    config = edit(config) or config
    (path / "config.json").write_text(json.dumps(config))
    return path


def setting(key, value):
    return lambda c: c.update({key: value})


def dropping(key):
    return lambda c: c.pop(key) and None


def native(key, value=None, drop=False):
    return lambda c: (c["plmlab"].pop(key) and None) if drop else c["plmlab"].update({key: value})


CASES = [
    ("gpt2", setting("n_layer", "two"), "n_layer must be an integer, got 'two'"),
    ("gpt2", setting("n_layer", 2.7), "n_layer must be an integer, got 2.7"),
    ("gpt2", setting("n_layer", None), "n_layer must be an integer, got null"),
    ("gpt2", setting("n_embd", True), "n_embd must be an integer, got true"),
    ("gpt2", setting("layer_norm_epsilon", "x"), "layer_norm_epsilon must be a finite number, got 'x'"),
    ("gpt2", setting("activation_function", "quick_gelu"), "activation_function='quick_gelu' is not supported"),
    ("gpt2", setting("n_layer", 0), "n_layers must be positive"),
    ("gpt2", dropping("n_embd"), "missing field 'n_embd'"),
    ("openai-gpt", setting("n_head", "4"), "n_head must be an integer"),
    ("openai-gpt", dropping("n_positions"), "missing field 'n_positions'"),
    ("llama", setting("num_hidden_layers", "two"), "num_hidden_layers must be an integer"),
    ("llama", setting("rope_parameters", {"rope_theta": "x"}), "rope_parameters: rope_theta must be a finite number"),
    ("llama", setting("tie_word_embeddings", "no"), "tie_word_embeddings must be true or false"),
    ("llama", dropping("hidden_size"), "missing field 'hidden_size'"),
    ("glm", setting("num_attention_heads", 2.0), "num_attention_heads must be an integer"),
    ("glm", setting("partial_rotary_factor", "half"), "partial_rotary_factor must be a finite number"),
    ("glm", dropping("intermediate_size"), "missing field 'intermediate_size'"),
    ("chatglm", setting("num_layers", None), "num_layers must be an integer, got null"),
    ("chatglm", setting("rope_ratio", "x"), "rope_ratio must be a finite number"),
    ("chatglm", dropping("padded_vocab_size"), "missing field 'padded_vocab_size'"),
    ("bert", setting("num_hidden_layers", "two"), "num_hidden_layers must be an integer"),
    ("bert", setting("layer_norm_eps", float("nan")), "layer_norm_eps must be a finite number, got nan"),
    ("bert", setting("architectures", "BertModel"), "architectures must be a list of class names"),
    ("bert", setting("hidden_act", 1), "hidden_act must be a string"),
    ("bert", dropping("vocab_size"), "missing field 'vocab_size'"),
    ("roberta", setting("pad_token_id", "one"), "pad_token_id must be an integer"),
    ("albert", setting("embedding_size", 2.5), "embedding_size must be an integer"),
    ("t5", setting("num_layers", "two"), "num_layers must be an integer"),
    ("t5", setting("feed_forward_proj", 3), "feed_forward_proj must be a string"),
    ("t5", setting("feed_forward_proj", "gated-quick_gelu"), "feed_forward_proj='gated-quick_gelu' is not supported"),
    ("t5", setting("eos_token_id", ["</s>"]), "eos_token_id must be an integer"),
    ("t5", dropping("d_kv"), "missing field 'd_kv'"),
    ("plmlab", native("d_model", drop=True), "the plmlab config lacks d_model"),
    ("plmlab", native("d_model", "abc"), "d_model must be an integer, got 'abc'"),
    ("plmlab", native("norm_eps", "x"), "norm_eps must be a finite number"),
    ("plmlab", setting("plmlab", [1, 2]), "plmlab must be an object, got a list"),
    ("gpt2", lambda c: [c], "expected a JSON object of config fields, got a list"),
    ("gpt2", setting("model_type", ["gpt2"]), "model_type ['gpt2'] is not supported"),
]


@pytest.mark.parametrize("model_type,edit,needle", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_config_json_is_one_line_naming_file_and_key(saved, tmp_path, model_type, edit, needle):
    path = edited(saved, tmp_path, model_type, edit)
    with pytest.raises(PlmlabError) as e:
        plmlab.load_pretrained(path)
    message = str(e.value)
    assert needle in message and "\n" not in message, message
    assert str(path) in message  # names the file


@pytest.mark.parametrize("model_type,edit,needle", [CASES[0], CASES[4], CASES[10], CASES[-2], CASES[32]])
def test_plmlab_info_on_a_bad_config_json_exits_2_with_one_line(saved, tmp_path, capsys, model_type, edit, needle):
    path = edited(saved, tmp_path, model_type, edit)
    assert main(["info", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("plmlab: error: ")
    assert needle in captured.err and captured.err.count("\n") == 1, captured.err


def test_untouched_configs_still_load(saved):
    for model_type, path in saved.items():
        assert plmlab.load_pretrained(path).config.vocab_size == 96, model_type


# --- a run directory whose newest checkpoint fails its manifest ----------------------------------
@pytest.fixture
def run_dir(tmp_path):
    """RUN/checkpoints/step-1 and step-2, written by the trainer's own checkpoint writer."""
    from plmlab.train.checkpoint import write_checkpoint

    models = {}
    for step in (1, 2):
        torch.manual_seed(step)
        models[step] = plmlab.build_model("gpt-tiny", vocab_size=96).eval()
        write_checkpoint(tmp_path / "run" / "checkpoints", step, lambda d, m=models[step]: plmlab.save_pretrained(m, d))
    return tmp_path / "run", models


def corrupt(folder):
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, another sha256
    weights.write_bytes(bytes(data))


def same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_run_dir_uses_its_newest_complete_checkpoint(run_dir, capsys):
    run, models = run_dir
    assert same_weights(plmlab.load_pretrained(run), models[2])
    corrupt(run / "checkpoints" / "step-00000002")
    assert same_weights(plmlab.load_pretrained(run), models[1])  # skips the broken one ...
    err = capsys.readouterr().err
    assert "skipping checkpoint step-00000002" in err and "sha256" in err and err.count("\n") == 1  # ... and says so


def test_run_dir_without_a_complete_checkpoint_is_refused(run_dir, capsys):
    run, _ = run_dir
    corrupt(run / "checkpoints" / "step-00000001")
    (run / "checkpoints" / "step-00000002" / "manifest.json").unlink()  # a save killed before its manifest
    with pytest.raises(PlmlabError, match="no checkpoint under checkpoints/ matches its manifest"):
        plmlab.load_pretrained(run)
    assert main(["info", str(run)]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("plmlab: error: ")


def test_a_broken_checkpoint_named_directly_is_refused(run_dir):
    run, _ = run_dir
    corrupt(run / "checkpoints" / "step-00000002")
    with pytest.raises(PlmlabError, match="step-00000002: model.safetensors does not match its sha256"):
        plmlab.load_pretrained(run / "checkpoints" / "step-00000002")
    plmlab.load_pretrained(run / "checkpoints" / "step-00000001")  # an intact one loads
