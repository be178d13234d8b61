"""Inputs that used to hang or abort (issue 24): refused before anything is allocated or opened,
with one line (PlmlabError in the library; stderr + exit 2 in the CLI)."""

import json
import os
import shutil
import threading

import pytest
import torch

import plmlab
from plmlab import PlmlabError
from plmlab.cli import main
from plmlab.modeling import _rough_params, check_fits, count_parameters, device_memory
from plmlab.presets import PRESETS, get_preset


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    return plmlab.save_pretrained(plmlab.build_model("gpt-tiny", vocab_size=96), tmp_path_factory.mktemp("gpt"))


def _copy(saved, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(saved, folder)
    return folder


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_the_cheap_estimate_is_within_one_and_a_half_of_the_exact_count(name):
    # check_fits trusts the estimate to clear a model when twice it fits; every preset family
    # (GQA, gated MLPs, ALBERT's sharing, encoder-decoders) must be within that slack
    config = get_preset(name)
    assert 1 / 1.5 < count_parameters(config)["params"] / _rough_params(config) < 1.5


@pytest.mark.parametrize("edit", [{"n_layer": 10**9}, {"n_layer": 10**12}, {"n_embd": 2**20, "n_head": 2**10}])
def test_a_config_too_big_for_memory_is_refused_before_building(saved, tmp_path, capsys, edit):
    folder = _copy(saved, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config.update(edit)
    config.pop("plmlab", None)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(PlmlabError, match="parameters: .* GiB of float32 weights, more than the"):
        plmlab.load_pretrained(folder)
    assert main(["generate", "--model", str(folder), "--prompt", "hi", "--max-new-tokens", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(folder) in err


def test_build_model_refuses_what_cannot_fit_and_allows_what_can(monkeypatch):
    with pytest.raises(PlmlabError, match="more than the"):
        plmlab.build_model("gpt-tiny", n_layers=10**9)
    budget = device_memory(torch.device("cpu"))
    assert budget and budget > 2**28
    check_fits(get_preset("llama-7b"), torch.device("meta"))  # meta has no limit: nothing to refuse
    # at the limit the exact count decides: weights of exactly the budget fit, one byte less does not
    needed = count_parameters("gpt-tiny")["params"] * 4
    monkeypatch.setattr("plmlab.modeling.device_memory", lambda device: needed)
    assert plmlab.build_model("gpt-tiny").num_parameters() * 4 == needed
    monkeypatch.setattr("plmlab.modeling.device_memory", lambda device: needed - 1)
    with pytest.raises(PlmlabError, match=f"{needed // 4:,} parameters"):
        plmlab.build_model("gpt-tiny")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["model.safetensors", "model.safetensors.index.json"])
def test_a_fifo_in_a_checkpoint_is_refused_not_opened(saved, tmp_path, name):
    folder = _copy(saved, tmp_path)
    (folder / name).unlink(missing_ok=True)
    os.mkfifo(folder / name)
    outcome = {}

    def load():
        try:
            plmlab.load_pretrained(folder)
        except PlmlabError as e:
            outcome["error"] = str(e)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the reader so the test process can exit, then fail
        with open(folder / name, "wb"):
            pass
        pytest.fail("loading a checkpoint whose file is a FIFO hangs")
    assert "a FIFO, not a file; refusing to read it" in outcome["error"]


@pytest.mark.parametrize("weight_map, needle", [
    ([1, 2], "weight_map must map"),
    ({"lm_head.weight": "../../outside.safetensors"}, "in the same folder"),
    ({"lm_head.weight": 3}, "weight_map must map"),
])
def test_a_bad_shard_index_is_one_line(saved, tmp_path, weight_map, needle):
    folder = _copy(saved, tmp_path)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(PlmlabError, match=needle):
        plmlab.load_pretrained(folder)


def test_tokenizer_train_refuses_an_absurd_vocabulary_before_training(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a few words of text\n" * 20)
    out = tmp_path / "tok"
    assert main(["tokenizer", "train", "--corpus", str(corpus), "--style", "gpt2", "--vocab-size", "1000000000",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is above 1,048,576" in err and not out.exists()


def test_the_python_api_raises_the_projects_error_for_wrong_types(saved, tmp_path):
    with pytest.raises(PlmlabError, match="load_tokenizer takes a directory"):
        plmlab.load_tokenizer(5)
    with pytest.raises(PlmlabError, match="expected a Config or a preset name, got NoneType"):
        plmlab.count_parameters(None)
    with pytest.raises(PlmlabError, match="expected a Config or a preset name"):
        plmlab.build_model(3)
    with pytest.raises(PlmlabError, match="generate takes a loaded model .* not a str"):
        plmlab.generate(str(saved), [[1, 2]])
    with pytest.raises(PlmlabError, match="takes a plmlab model"):
        plmlab.save_pretrained("gpt-tiny", tmp_path / "x")
    (tmp_path / "file").write_text("")
    with pytest.raises(PlmlabError, match="cannot write .*file"):
        plmlab.save_pretrained(plmlab.load_pretrained(saved), tmp_path / "file")


@pytest.mark.parametrize("edit", [{"decoder_start_token_id": 5000}, {"decoder_start_token_id": -1},
                                  {"decoder_start_token_id": None, "pad_token_id": 10**6}])
def test_a_t5_start_token_outside_the_vocabulary_is_one_line(tmp_path, edit):
    torch.manual_seed(0)
    folder = plmlab.save_pretrained(plmlab.build_model("t5-tiny", vocab_size=300), tmp_path / "t5")
    config = json.loads((folder / "config.json").read_text())
    config.pop("plmlab")
    (folder / "config.json").write_text(json.dumps({**config, **edit}))
    with pytest.raises(PlmlabError, match="the decoder's start token .* is outside the vocabulary of 300"):
        plmlab.load_pretrained(folder)
