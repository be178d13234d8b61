"""Issue 9: GLM-style tokenizers must not end an encoded prompt with <|endoftext|> (generate and
transformers' pipeline then started a new document), old saved or cached GLM tokenizers must not
bring that behaviour back, and the built-in tokenizer cache survives damage and a full disk."""

import dataclasses
import errno
import json
import os

import pytest
from tokenizers import processors

import plmlab.tokenizers.train as training
from plmlab.tokenizers import STYLES, builtin_tokenizer, load_tokenizer, train_tokenizer

TEXTS = [f"The model number {i} reads text and writes words. It learns to fill blanks." for i in range(200)]
PROMPT = "The model reads"
OLD_GLM = ("[CLS] $A <|endoftext|>", "[CLS] $A <|endoftext|> $B:1 <|endoftext|>:1")  # before issue 9


@pytest.fixture(scope="module")
def glm():
    return train_tokenizer(TEXTS, "glm", 300)


def test_glm_prompt_ends_with_the_prompt(glm, tmp_path):
    transformers = pytest.importorskip("transformers")
    plain = glm.encode(PROMPT, add_special_tokens=False)
    assert glm.encode(PROMPT) == [glm.cls_id] + plain
    glm.save(tmp_path)
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ids = auto(PROMPT)["input_ids"]
    assert ids == [glm.cls_id] + plain and ids[-1] != auto.eos_token_id == glm.eos_id
    ids, types = glm.encode_pair("a b", "c")
    assert ids[-1] != glm.eos_id and ids.count(glm.eos_id) == 1 and types[-1] == 1


def test_glm_objective_and_fill_blanks_still_wrap_part_a(glm):
    """The objective and fill_blanks place [CLS] ... <|endoftext|> around Part A by id, so
    the template change leaves their batches as they were."""
    import numpy as np

    from plmlab.families.glm import prepare
    from plmlab.objectives import get_objective

    ids = glm.encode(TEXTS[0], add_special_tokens=False)
    example = get_objective("glm")(glm, 64).from_ids(ids, np.random.default_rng(0))
    n_a = int((example["position_ids"][1] == 0).sum())  # Part A: block position 0
    assert example["input_ids"][0] == glm.cls_id and example["input_ids"][n_a - 1] == glm.eos_id
    assert prepare(glm, PROMPT) == glm.encode(PROMPT, add_special_tokens=False) + [glm.special_ids["gmask"]]


def _old_glm_dir(glm, folder):
    old = processors.TemplateProcessing(single=OLD_GLM[0], pair=OLD_GLM[1],
                                        special_tokens=[("[CLS]", glm.cls_id), ("<|endoftext|>", glm.eos_id)])
    glm.backend.post_processor, saved = old, glm.backend.post_processor
    try:
        glm.save(folder)
    finally:
        glm.backend.post_processor = saved


def test_old_saved_glm_directory_loads_with_todays_template(glm, tmp_path, capsys):
    _old_glm_dir(glm, tmp_path / "old")
    back = load_tokenizer(tmp_path / "old")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"plmlab: {tmp_path / 'old'}: this glm tokenizer was saved by an older plmlab")
    assert back.encode(PROMPT) == glm.encode(PROMPT)  # no trailing <|endoftext|>
    back.save(tmp_path / "new")  # saving again updates the directory: no more warning
    assert load_tokenizer(tmp_path / "new").encode(PROMPT) == glm.encode(PROMPT)
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- the built-in tokenizer cache


@pytest.fixture
def quick_builtin(monkeypatch, tmp_path):
    """Built-in tokenizers trained on a small corpus (seconds saved), in a private cache; the
    number of trainings is counted."""
    monkeypatch.setenv("PLMLAB_CACHE", str(tmp_path))
    trainings = []
    real = training.train_tokenizer

    def small(texts, style, vocab_size, **options):
        trainings.append(style)
        return real(TEXTS, style, 300, **options)

    monkeypatch.setattr(training, "train_tokenizer", small)
    return trainings


def _folders(tmp_path):
    return sorted(p.name for p in (tmp_path / "tokenizers").iterdir())


def test_cached_tokenizer_of_an_older_glm_style_is_not_reused(quick_builtin, monkeypatch, tmp_path):
    today = STYLES["glm"]
    monkeypatch.setitem(STYLES, "glm", dataclasses.replace(today, template=OLD_GLM))
    old = builtin_tokenizer("glm")
    assert old.encode(PROMPT)[-1] == old.eos_id  # the behaviour of the old style, cached
    monkeypatch.setitem(STYLES, "glm", today)
    new = builtin_tokenizer("glm")
    assert new.encode(PROMPT)[-1] != new.eos_id and len(_folders(tmp_path)) == 2
    assert quick_builtin == ["glm", "glm"]


@pytest.mark.parametrize("damage", ["garbage", "symlink", "wrong-style", "missing"])
def test_damaged_cached_tokenizer_is_trained_again(quick_builtin, tmp_path, capsys, damage):
    first = builtin_tokenizer("bert")
    (name,) = _folders(tmp_path)
    folder = tmp_path / "tokenizers" / name
    if damage == "garbage":
        (folder / "tokenizer.json").write_text('{"version": "1.0", "mod')
    elif damage == "symlink":
        elsewhere = tmp_path / "elsewhere.json"
        (folder / "tokenizer.json").rename(elsewhere)
        (folder / "tokenizer.json").symlink_to(elsewhere)
    elif damage == "wrong-style":
        config = json.loads((folder / "tokenizer_config.json").read_text())
        config["plmlab"]["style"] = "gpt2"
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    else:
        (folder / "special_tokens_map.json").unlink()
    again = builtin_tokenizer("bert")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"plmlab: cached tokenizer {folder} is damaged (") and line.endswith("training it again")
    assert again.fingerprint() == first.fingerprint() and quick_builtin == ["bert", "bert"]
    builtin_tokenizer("bert")
    assert quick_builtin == ["bert", "bert"] and capsys.readouterr().err == ""


def test_full_disk_costs_only_the_caching(quick_builtin, tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    tok = builtin_tokenizer("gpt2")
    assert tok.encode("the model") == tok.encode("the model", add_special_tokens=False)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("plmlab: cannot cache the built-in gpt2 tokenizer under") and "No space left" in line
    assert _folders(tmp_path) == []  # no half-written tokenizer folder a later run would trust
