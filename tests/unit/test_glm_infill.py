"""GLM blank filling: cached == uncached decoding, the 2-D positions of Part B, the CLI."""

import json

import pytest
import torch

import plmlab
from plmlab import build_model
from plmlab.cli import main as cli_main
from plmlab.errors import PlmlabError
from plmlab.generation.runners import make_inputs
from plmlab.infill import decode_span, fill_blanks
from plmlab.objectives import example_rng, get_objective
from plmlab.families.glm import GlmTokens, blank_inputs, glm_layout, prepare
from plmlab.tokenizers import train_tokenizer

TEXTS = ["The cat sat on the mat. It was warm; the sun was out!",
         "Functions return values. A list holds items: numbers, strings or other lists."] * 30
QUERY = "The cat sat [MASK] the mat. It [sMASK] and [gMASK]"


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, "glm", vocab_size=400)


def random_glm(tokenizer, **kw):
    torch.manual_seed(0)  # a large init spreads the logits, so decoding is not one token on repeat
    return build_model("glm-tiny", **{"vocab_size": tokenizer.vocab_size, "init_std": 0.3, **kw}).eval()


# DeepNorm's beta init (0.5 at two layers) shrinks the residual branches: a larger std keeps the
# random model's decoding varied.
@pytest.mark.parametrize("arch", [{}, {"position": "rotary-2d", "norm_placement": "deepnorm", "init_std": 0.5}],
                         ids=["glm-learned-2d", "chatglm6b-rotary-2d"])
def test_cached_and_uncached_fill_the_same_tokens(tokenizer, arch):
    model = random_glm(tokenizer, **arch)
    cached = fill_blanks(model, tokenizer, QUERY, max_new_tokens=10)
    plain = fill_blanks(model, tokenizer, QUERY, max_new_tokens=10, use_cache=False)
    assert cached.blanks == plain.blanks and cached.ids == plain.ids
    assert len(cached.blanks) == 3  # [MASK], [sMASK] and [gMASK], filled left to right
    assert len(set(sum(cached.blanks, []))) > 3  # real decoding, not one token on repeat
    sampled = [fill_blanks(model, tokenizer, QUERY, max_new_tokens=10, use_cache=c, do_sample=True, top_k=20,
                           seed=5).blanks for c in (True, False)]
    assert sampled[0] == sampled[1] and sampled[0] != cached.blanks


def test_a_span_is_decoded_at_its_masks_position(tokenizer):
    """The cached step logits equal a full forward pass with GLM's 2-D positions and mask."""
    model = random_glm(tokenizer)
    tok = GlmTokens.from_tokenizer(tokenizer)
    part_a = [tok.cls] + prepare(tokenizer, "The cat [MASK] on the mat.") + [tok.eos]
    m = part_a.index(tok.mask)
    span = decode_span(model, part_a, m, tok, 6, True, [], False, None)
    n_a, n_b = len(part_a), len(span) + 1
    ids = torch.tensor([part_a + [tok.sop] + span])
    pos = torch.tensor([[list(range(n_a)) + [m] * n_b, [0] * n_a + list(range(1, n_b + 1))]])
    mask = torch.ones(1, n_a + n_b, n_a + n_b)
    mask[:, :, n_a:] = torch.tril(torch.ones(n_a + n_b, n_b), diagonal=-n_a)
    with torch.no_grad():
        full = model(ids, position_ids=pos, attention_mask=mask).logits[0, n_a:]  # (n_b, V)
    expected = full.argmax(-1)[:-1].tolist()  # greedy: each token is the argmax of the step before
    banned = {*tok.masks, tok.sop, tok.cls}
    assert not banned & set(expected) and span == expected


@pytest.mark.parametrize("name", ["glm", "glm-gmask", "glm-smask"])
def test_the_objective_and_fill_blanks_lay_out_a_text_alike(tokenizer, name):
    """For the same text and blank, fill-blanks' inputs once the span is decoded are the
    objective's training example: the same ids, 2-D positions and Part A / Part B mask."""
    objective = get_objective(name)(tokenizer, 64)
    tok = objective.tok
    for seed in range(4):
        ids = tokenizer.encode("The cat sat on the mat. It was warm; the sun was out!", add_special_tokens=False)
        example = objective.from_ids(ids, example_rng(seed, 0, 0))
        blanks = objective.describe(example)["blanks"]
        part_a = objective.describe(example)["part_a"]
        first = blanks[0]  # Part B's first span, [sop] + its tokens
        inputs = blank_inputs(part_a, first["mask_position"], first["input"])
        n = len(part_a) + len(first["input"])  # the example's rows and columns up to that span's end
        assert inputs["input_ids"].tolist() == example["input_ids"][:n].tolist()
        assert inputs["position_ids"].tolist() == example["position_ids"][:, :n].tolist()
        assert inputs["attention_mask"].tolist() == example["attention_mask"][:n, :n].tolist()


def test_the_decoding_runner_uses_the_same_layout():
    """plmlab.generate's GLM inputs (prompt = Part A, a blank right after it) are glm_layout's,
    and a left-padded row is the same layout shifted right behind its padding."""
    inputs = make_inputs(build_model("glm-tiny").config)
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])  # (B, T) a prompt of 4 (row 1: 2 + 2 padding), 1 new
    got = inputs.prefill(torch.zeros(2, 4, dtype=torch.long), mask[:, :4], True)  # fixes the prompt length
    got = inputs.prefill(torch.zeros(2, 5, dtype=torch.long), mask, True)
    positions, attention = glm_layout(4, [(4, 1)])
    assert got["position_ids"][0].tolist() == positions.tolist()
    assert got["attention_mask"][0].tolist() == attention.tolist()
    short_positions, _ = glm_layout(2, [(2, 1)])
    assert got["position_ids"][1, :, 2:].tolist() == short_positions.tolist()
    assert got["attention_mask"][1, :, :2].sum() == 0  # nothing attends to padding
    step = inputs.step(torch.ones(1, 7, dtype=torch.long), False, 1)  # the 3rd new token of an unpadded row
    assert step["position_ids"][0].tolist() == glm_layout(4, [(4, 3)])[0][:, -1:].tolist()
    assert step["attention_mask"][0].tolist() == glm_layout(4, [(4, 3)])[1][-1:].tolist()


def test_prepare(tokenizer):
    tok = GlmTokens.from_tokenizer(tokenizer)
    ids = prepare(tokenizer, "The cat sat [MASK] the mat")
    assert tok.mask in ids and " " not in [tokenizer.decode([t], skip_special_tokens=False) for t in ids]
    assert prepare(tokenizer, "The cat sat")[-1] == tok.gmask  # no blank: continue the text


def test_errors(tokenizer):
    with pytest.raises(PlmlabError, match="2-D"):
        fill_blanks(build_model("glm4-tiny"), tokenizer, QUERY)
    with pytest.raises(PlmlabError, match="exceeds"):
        fill_blanks(random_glm(tokenizer), tokenizer, QUERY, max_new_tokens=200)
    with pytest.raises(PlmlabError, match="GLM-style tokenizer"):
        fill_blanks(random_glm(tokenizer), train_tokenizer(TEXTS, "gpt2", vocab_size=300), QUERY)


def test_fill_blanks_cli(tokenizer, tmp_path, capsys):
    model = random_glm(tokenizer)
    plmlab.save_pretrained(model, tmp_path / "glm", tokenizer=tokenizer)
    assert cli_main(["fill-blanks", "--model", str(tmp_path / "glm"), QUERY, "--max-new-tokens", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = fill_blanks(model, tokenizer, QUERY, max_new_tokens=5)
    assert out["blank_ids"] == expected.blanks and out["text"] == expected.text
    assert cli_main(["fill-blanks", "--model", str(tmp_path / "glm"), "The cat", "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.startswith("The cat")
    plmlab.save_pretrained(build_model("glm4-tiny"), tmp_path / "g4", tokenizer=tokenizer)
    assert cli_main(["fill-blanks", "--model", str(tmp_path / "g4"), QUERY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("plmlab: error: fill-blanks needs") and err.count("\n") == 1


@pytest.mark.parametrize("arch", [{}, {"position": "rotary-2d", "norm_placement": "deepnorm", "init_std": 0.5}],
                         ids=["glm-learned-2d", "chatglm6b-rotary-2d"])
def test_plmlab_generate_continues_a_prompt_as_fill_blanks_does(tokenizer, tmp_path, capsys, arch):
    """`plmlab generate` on a 2-D GLM prints the blank of `prompt [gMASK]` (fill-blanks' layout)
    after the prompt, streamed and in --json; not the 1-D prefix layout's [eop]s."""
    model = random_glm(tokenizer, **arch)
    plmlab.save_pretrained(model, tmp_path / "glm", tokenizer=tokenizer)
    expected = fill_blanks(model, tokenizer, "The cat sat [gMASK]", max_new_tokens=6)
    blank = expected.blanks[0]
    assert blank and GlmTokens.from_tokenizer(tokenizer).eop not in blank
    args = ["generate", "--model", str(tmp_path / "glm"), "--greedy", "--max-new-tokens", "6", "The cat sat"]
    assert cli_main(args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == [{"prompt": "The cat sat", "text": expected.blank_texts[0], "ids": blank}]
    assert cli_main(args) == 0
    assert capsys.readouterr().out == "The cat sat" + expected.blank_texts[0] + "\n"
    assert cli_main(args + ["--max-new-tokens", "126"]) == 2  # [CLS] text [gMASK] <eos> <sop> + 126 > 128
    assert "--truncate-left" in capsys.readouterr().err
    assert cli_main(args + ["--max-new-tokens", "120", "--truncate-left", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["prompt"] == "The cat sat"
    assert cli_main(["generate", "--model", str(tmp_path / "glm"), "The cat [MASK] on the mat"]) == 2
    assert "plmlab fill-blanks" in capsys.readouterr().err


@pytest.mark.parametrize("position", ["learned-2d", "rotary-2d"])
def test_generate_continues_a_prompt_as_a_blank(position):
    """plmlab.generate on a GLM model: cached == uncached, and left padding changes nothing."""
    torch.manual_seed(0)
    model = build_model("glm-tiny", position=position, init_std=0.3).eval()
    prompts = [[6, 100, 200, 300, 400], [6, 500, 600]]
    cached = plmlab.generate(model, prompts, max_new_tokens=8, eos_token_id=None)
    assert cached.tolist() == plmlab.generate(model, prompts, max_new_tokens=8, eos_token_id=None,
                                              use_cache=False).tolist()
    alone = plmlab.generate(model, [prompts[1]], max_new_tokens=8, eos_token_id=None)
    assert alone.tolist() == cached[1:].tolist() and len(set(cached[0].tolist())) > 2
    # the same first step as the GLM layout spelled out: prompt = Part A, the blank right after it
    with torch.no_grad():
        n = len(prompts[0])
        ids = torch.tensor([prompts[0] + cached[0, :1].tolist()])
        pos = torch.tensor([[list(range(n)) + [n], [0] * n + [1]]])
        mask = torch.ones(1, n + 1, n + 1)
        mask[0, :n, n] = 0
        second = model(ids, position_ids=pos, attention_mask=mask).logits[0, -1].argmax()
    assert int(second) == int(cached[0, 1])


def test_pretrain_with_the_glm_objective_end_to_end(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"  # one document per line
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:16]))
    out = tmp_path / "run"
    args = ["pretrain", "--preset", "glm-tiny", "--objective", "glm-mix", "--corpus", str(corpus), "--out", str(out),
            "--max-steps", "3", "--batch-size", "4", "--seq-len", "64", "--vocab-size", "400", "--threads", "1",
            "--progress", "none", "--sample-tokens", "4", "--eval-every", "3"]
    assert cli_main(args) == 0
    capsys.readouterr()
    assert cli_main(["fill-blanks", "--model", str(out), "The cat [MASK] on the mat.", "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.startswith("The cat")
