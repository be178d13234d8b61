"""The lm-evaluation-harness adapter against lm-eval's own `hf` backend and plmlab's own choice
scoring, on a local task YAML and a local JSONL file (nothing downloads)."""

from __future__ import annotations

import json
import os

import pytest

os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is an optional extra (plmlab[eval])")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import plmlab  # noqa: E402
from plmlab.errors import PlmlabError  # noqa: E402
from plmlab.evaluate.choice import evaluate_choice, read_choice_items  # noqa: E402
from plmlab.lmeval import PlmlabLM, run_lm_eval  # noqa: E402
from lm_eval.api.registry import get_model as get_model_by_name  # noqa: E402
from plmlab.tokenizers import train_tokenizer  # noqa: E402

TEXTS = ["the cat sat on the mat.", "a dog ran in the park.", "birds fly over the sea."] * 20
ITEMS = [{"context": "the cat sat on the", "choices": ["mat.", "park.", "sea."], "label": 0},
         {"context": "a dog ran in the", "choices": ["mat.", "park", "sea. birds fly"], "label": 1},
         {"context": "birds fly over the ", "choices": ["mat.", "park.", "sea."], "label": 2},
         {"context": "the cat", "choices": ["sat on the mat.", "ran", "fly over the sea."], "label": 0}]
TASK = "plmlab_local_choice"


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """A saved gpt-tiny (which transformers loads), a local JSONL file and a task YAML reading it."""
    root = tmp_path_factory.mktemp("lmeval")
    os.environ["HF_DATASETS_CACHE"] = str(root / "datasets-cache")
    torch.manual_seed(0)
    model = plmlab.build_model("gpt-tiny")
    plmlab.save_pretrained(model, root / "model", tokenizer=train_tokenizer(TEXTS, "gpt2", vocab_size=300))
    data = root / "items.jsonl"
    data.write_text("".join(json.dumps(it) + "\n" for it in ITEMS))
    (root / "tasks").mkdir()
    (root / "tasks" / "local.yaml").write_text(
        f"task: {TASK}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: context\ndoc_to_choice: choices\n"
        "doc_to_target: label\nmetric_list:\n"
        "  - {metric: acc, aggregation: mean, higher_is_better: true}\n"
        "  - {metric: acc_norm, aggregation: mean, higher_is_better: true}\n")
    return root


def test_the_adapter_gives_lm_evals_own_hf_numbers_and_plmlabs_own(local):
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    # lm-eval's one-token logits cache reuses a batch row for a request whose context + continuation[:-1]
    # matches another's ("the cat" + " sat on the mat." vs "the cat sat on the" + " mat.") and then
    # reads the wrong row: off for the plain reference numbers
    hf = HFLM(pretrained=str(local / "model"), dtype="float32", device="cpu", batch_size=4, logits_cache=False)
    manager = TaskManager(include_path=str(local / "tasks"), include_defaults=False)
    out = lm_eval.simple_evaluate(model=hf, tasks=[TASK], task_manager=manager, log_samples=True, batch_size=4)
    samples = sorted(out["samples"][TASK], key=lambda s: s["doc_id"])
    hf_lls = np.array([[ll for (ll, _), in s["resps"]] for s in samples])
    hf_metrics = out["results"][TASK]

    ours = run_lm_eval(local / "model", TASK, include_path=local / "tasks", batch_size=3, include_defaults=False)
    assert ours.task == "lm-eval" and set(ours.metrics["results"]) == {TASK}
    for metric in ("acc,none", "acc_norm,none"):
        assert ours.metrics["results"][TASK][metric] == hf_metrics[metric]
    lm = PlmlabLM(pretrained=str(local / "model"), batch_size=3)  # the same requests lm-eval made
    our_lls = [[ll for ll, _ in lm.loglikelihood([_Request(*a) for a in s["arguments"]])] for s in samples]
    np.testing.assert_allclose(our_lls, hf_lls, rtol=1e-5, atol=1e-4)

    # plmlab's own --task choice on the same items: the same log-likelihoods and accuracies
    result = evaluate_choice(lm.model, lm.tokenizer, read_choice_items(local / "items.jsonl"), batch_size=3)
    np.testing.assert_allclose([r["loglikelihoods"] for r in result.items], hf_lls, rtol=1e-5, atol=1e-4)
    assert result.metrics["accuracy"] == hf_metrics["acc,none"]
    assert result.metrics["accuracy_norm"] == hf_metrics["acc_norm,none"]


def test_an_unknown_task_is_one_line(local):
    with pytest.raises(PlmlabError, match="unknown lm-eval task"):
        run_lm_eval(local / "model", ["no_such_task_here"], include_path=local / "tasks", include_defaults=False)


def test_registered_as_plmlab_and_lm_evals_backends_still_load():
    from lm_eval.api.registry import get_model

    assert get_model("plmlab") is PlmlabLM
    assert get_model("hf").__name__ == "HFLM"  # importing plmlab.lmeval must not hide lm-eval's own models


def test_lm_eval_builds_it_from_its_argument_string(local):
    lm = get_model_by_name("plmlab").create_from_arg_string(f"pretrained={local / 'model'}",
                                                            {"batch_size": 2, "max_batch_size": None, "device": "cpu"})
    assert lm.batch_size == 2 and lm.model.config.arch == "decoder"


class _Request:  # what lm-eval hands a model: an object with .args
    def __init__(self, *args):
        self.args = args


def test_rolling_loglikelihood_equals_lm_evals_hf_backend(local):
    from lm_eval.models.huggingface import HFLM

    text = " ".join(["the cat sat on the mat."] * 50)  # longer than gpt-tiny's 128 positions: several windows
    ours = PlmlabLM(pretrained=str(local / "model"))
    assert len(ours.tokenizer.encode(text)) > 2 * 128
    hf = HFLM(pretrained=str(local / "model"), dtype="float32", device="cpu", batch_size=4)
    requests = [_Request(text), _Request("birds fly over the sea.")]
    np.testing.assert_allclose(ours.loglikelihood_rolling(requests), hf.loglikelihood_rolling(requests),
                               rtol=1e-5, atol=1e-3)


def test_generate_until_stops_at_the_tasks_strings(local):
    lm = PlmlabLM(pretrained=str(local / "model"))
    out = lm.generate_until([_Request("the cat", {"until": ["."], "max_gen_toks": 8}),
                             _Request("a dog", {"until": "\n", "max_gen_toks": 5})])
    assert len(out) == 2 and all(isinstance(o, str) for o in out) and "." not in out[0]


def test_without_lm_eval_installed_the_adapter_is_one_line(monkeypatch, local):
    import plmlab.lmeval as adapter

    monkeypatch.setattr(adapter, "lm_eval", None)  # as if the optional extra were not installed
    with pytest.raises(PlmlabError, match=r"not installed: pip install 'plmlab\[eval\]'"):
        run_lm_eval(local / "model", [TASK])
    with pytest.raises(PlmlabError, match="not installed"):
        PlmlabLM(pretrained=str(local / "model"))
