"""Multiple choice by log-likelihood: every family's batched, cache-sharing scorer against a plain
one-pair-at-a-time computation, lm-eval's metric definitions, few-shot prompts, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import plmlab
from plmlab.errors import PlmlabError
from plmlab.evaluate.choice import choice_metrics, evaluate_choice, fewshot_prompts, read_choice_items
from plmlab.evaluate.scoring import encode_pairs, loglikelihoods, special_wrap
from plmlab.families.glm import GlmTokens, blank_inputs
from plmlab.presets import get_preset
from plmlab.tokenizers import train_tokenizer

TEXTS = ["the cat sat on the mat.", "a dog ran in the park.", "birds fly over the sea."] * 20
PAIRS = [("the cat sat on", " the mat"), ("the cat sat on", " a dog ran"), ("a dog", " ran"),
         ("", " birds fly"), ("birds fly ", "over the sea.")]
FAMILIES = {"gpt-tiny": "gpt2", "llama-tiny": "llama", "t5-tiny": "t5", "glm-tiny": "glm", "bert-tiny": "bert"}


# architectures transformers cannot load, scored all the same: ChatGLM-6B's block, a post-LN LLaMA
VARIANTS = {"chatglm6b-tiny": ("glm-tiny", {"position": "rotary-2d", "norm_placement": "deepnorm"}),
            "llama-post-tiny": ("llama-tiny", {"norm_placement": "post", "final_norm": False})}
FAMILIES.update({"chatglm6b-tiny": "glm", "llama-post-tiny": "llama"})


def tiny(preset: str):
    torch.manual_seed(0)
    if preset in VARIANTS:
        base, changes = VARIANTS[preset]
        config = plmlab.Config.from_dict({**get_preset(base).to_dict(), **changes})
        return plmlab.build_model(config).eval(), train_tokenizer(TEXTS, FAMILIES[preset], vocab_size=300)
    return plmlab.build_model(preset).eval(), train_tokenizer(TEXTS, FAMILIES[preset], vocab_size=300)


def logp_of(logits: torch.Tensor, targets: list[int]) -> float:
    """Sum of log p(targets) over the rows of logits (n, V)."""
    return float(logits.float().log_softmax(-1).gather(-1, torch.tensor(targets)[:, None]).sum())


@torch.no_grad()
def reference(model, tokenizer, ctx: list[int], cont: list[int]) -> float:
    """One pair alone, no cache, no padding, no batching: each family's definition written out."""
    arch = model.config.arch
    if arch == "encoder-decoder":  # the continuation as the decoder's target
        logits = model(input_ids=torch.tensor([ctx]), labels=torch.tensor([cont])).logits[0]
        return logp_of(logits, cont)
    if arch == "encoder":  # Salazar et al. 2020: each continuation token masked in turn
        prefix, suffix = special_wrap(tokenizer)
        text, total = prefix + ctx + cont + suffix, 0.0
        for p in range(len(prefix) + len(ctx), len(prefix) + len(ctx) + len(cont)):
            masked = list(text)
            masked[p] = tokenizer.mask_id
            total += logp_of(model(torch.tensor([masked])).logits[0, p:p + 1], [text[p]])
        return total
    if model.config.position.endswith("2d"):  # GLM: the whole layout, Part B = [sop] + cont[:-1]
        tok = GlmTokens.from_tokenizer(tokenizer)
        part_a = [tok.cls] + ctx + [tok.mask, tok.eos]
        inputs = {k: torch.from_numpy(v)[None] for k, v in blank_inputs(part_a, len(part_a) - 2,
                                                                       [tok.sop] + cont[:-1]).items()}
        return logp_of(model(**inputs).logits[0, len(part_a):], cont)
    logits = model(torch.tensor([ctx + cont[:-1]])).logits[0, len(ctx) - 1:]  # the last token never fed
    return logp_of(logits, cont)


@pytest.mark.parametrize("preset", list(FAMILIES))
def test_batched_scoring_equals_one_pair_at_a_time(preset):
    model, tok = tiny(preset)
    token_pairs = encode_pairs(model, tok, PAIRS)
    expected = [reference(model, tok, ctx, cont) for ctx, cont in token_pairs]
    for batch_size in (1, 3, 16):
        got = [ll for ll, _ in loglikelihoods(model, tok, PAIRS, batch_size=batch_size)]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_decoder_pairs_are_split_as_lm_eval_splits_them():
    model, tok = tiny("gpt-tiny")
    (ctx, cont), (ctx2, cont2), *_ , (e_ctx, e_cont), (s_ctx, s_cont) = encode_pairs(model, tok, PAIRS)
    assert ctx + cont == tok.encode("the cat sat on the mat") and ctx == tok.encode("the cat sat on")
    assert e_ctx == [tok.bos_id if tok.bos_id is not None else tok.eos_id]  # an empty context: the prefix token
    assert encode_pairs(model, tok, [("  ", "birds")]) == [(e_ctx, tok.encode("  birds"))]  # spaces only: the same
    assert s_ctx == tok.encode("birds fly") and s_cont == tok.encode("birds fly over the sea.")[len(s_ctx):]


def test_a_context_past_the_window_is_cut_from_the_left_as_lm_eval_cuts_it():
    model, tok = tiny("gpt-tiny")
    long = " ".join(["the cat sat on the mat."] * 40)  # several times the 128 positions
    pairs = [(long, " a dog ran"), (long, " birds")]
    for (ctx, cont), (ll, _) in zip(encode_pairs(model, tok, pairs), loglikelihoods(model, tok, pairs, batch_size=2)):
        window = (ctx + cont)[-(model.config.max_positions + 1):]  # lm-eval: [-(max_length + 1):][:-1]
        assert ll == pytest.approx(reference(model, tok, window[:-len(cont)], cont), abs=1e-4)


# --- a constructed case: models taught the answers must pick them ------------------------------------
ITEMS = [{"context": "the cat sat on the", "choices": ["sea.", "mat.", "park."], "label": 1},
         {"context": "a dog ran in the", "choices": ["park.", "mat.", "sea."], "label": 0},
         {"context": "birds fly over the", "choices": ["mat.", "park.", "sea."], "label": 2}]


def teach(model, tokenizer, steps: int = 60) -> None:
    """Overfit each family on the items' right answers, scored the way the family's scorer reads them.
    Every family picks all three from step 40 on and keeps them (t5-tiny is the last to; checked to 120)."""
    pairs = encode_pairs(model, tokenizer, [(it["context"], " " + it["choices"][it["label"]]) for it in ITEMS])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = sum(family_loss(model, tokenizer, ctx, cont) for ctx, cont in pairs)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def family_loss(model, tokenizer, ctx, cont):
    arch = model.config.arch
    if arch == "encoder-decoder":
        return model(input_ids=torch.tensor([ctx]), labels=torch.tensor([cont])).loss
    if arch == "encoder":
        prefix, suffix = special_wrap(tokenizer)
        text = prefix + ctx + cont + suffix
        ids = torch.tensor([text] * len(cont))
        labels = torch.full_like(ids, -100)
        for r, p in enumerate(range(len(prefix) + len(ctx), len(prefix) + len(ctx) + len(cont))):
            labels[r, p], ids[r, p] = text[p], tokenizer.mask_id
        return model(ids, labels=labels).loss
    if model.config.position.endswith("2d"):
        tok = GlmTokens.from_tokenizer(tokenizer)
        part_a = [tok.cls] + ctx + [tok.mask, tok.eos]
        inputs = {k: torch.from_numpy(v)[None] for k, v in blank_inputs(part_a, len(part_a) - 2,
                                                                       [tok.sop] + cont[:-1]).items()}
        labels = torch.tensor([[-100] * len(part_a) + cont])
        return model(**inputs, labels=labels).loss
    ids = ctx + cont
    return model(torch.tensor([ids[:-1]]), labels=torch.tensor([ids[1:]])).loss


@pytest.mark.parametrize("preset", ["gpt-tiny", "t5-tiny", "glm-tiny", "bert-tiny"])
def test_a_model_taught_the_answers_picks_them(preset):
    model, tok = tiny(preset)
    teach(model, tok)
    result = evaluate_choice(model, tok, ITEMS, batch_size=4)
    assert result.metrics["accuracy"] == 1.0 and result.metrics["n"] == 3
    assert [r["pred"] for r in result.items] == [1, 0, 2]
    assert result.metrics["items_per_s"] > 0


# --- metrics -------------------------------------------------------------------------------------------
def test_acc_norm_divides_by_the_choice_length_as_lm_eval_does():
    items = [{"context": "x", "choices": ["a", "bbbb"], "label": 1},
             {"context": "x", "choices": ["é", "ab"], "label": 0}]
    # item 1: raw -1 vs -2 picks "a"; per character -1 vs -0.5 picks "bbbb".
    # item 2: raw -1.5 vs -1 picks "ab"; per character -1.5 vs -0.5 picks "ab"; per byte (é is 2) -0.75 vs -0.5.
    metrics, records = choice_metrics(items, [[-1.0, -2.0], [-1.5, -1.0]])
    assert [r["pred"] for r in records] == [0, 1] and [r["pred_norm"] for r in records] == [1, 1]
    assert metrics["accuracy"] == 0.0 and metrics["accuracy_norm"] == 0.5 and metrics["accuracy_bytes"] == 0.5
    # characters and bytes disagree: "éé" is 2 characters, 4 bytes; per character -1.0 vs -0.83 picks "abc",
    # per byte -0.5 vs -0.83 picks "éé"
    metrics, _ = choice_metrics([{"context": "x", "choices": ["éé", "abc"], "label": 0}], [[-2.0, -2.5]])
    assert (metrics["accuracy"], metrics["accuracy_norm"], metrics["accuracy_bytes"]) == (1.0, 0.0, 1.0)


# --- few-shot prompts -----------------------------------------------------------------------------------
def many_items(n: int = 12) -> list[dict]:
    return [{"context": f"question {i}", "choices": [f"no {i}", f"yes {i}"], "label": i % 2} for i in range(n)]


def test_fewshot_prompts_are_deterministic_for_a_seed_and_never_show_the_query():
    items = many_items()
    a, b = fewshot_prompts(items, shots=3, seed=1), fewshot_prompts(items, shots=3, seed=1)
    assert a == b and a != fewshot_prompts(items, shots=3, seed=2)
    for i, prompt in enumerate(a):
        parts = prompt.split("\n\n")
        assert len(parts) == 4 and parts[-1] == f"question {i}"
        for demo in parts[:-1]:
            j = int(demo.split()[1])
            assert j != i and demo == f"question {j} " + items[j]["choices"][items[j]["label"]]
    assert fewshot_prompts(items, shots=0) == [it["context"] for it in items]


def test_fewshot_demos_come_from_the_demo_file_when_given():
    demos = [{"context": "demo q", "choices": ["wrong", "right"], "label": 1}]
    prompts = fewshot_prompts(many_items(3), shots=1, demos=demos, seed=0)
    assert prompts == [f"demo q right\n\nquestion {i}" for i in range(3)]
    with pytest.raises(PlmlabError, match="2 shots need 2 demonstrations but only 1"):
        fewshot_prompts(many_items(3), shots=2, demos=demos)


# --- items and bad input ---------------------------------------------------------------------------------
def write(tmp_path, lines: list) -> str:
    path = tmp_path / "items.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return str(path)


def test_read_choice_items_reads_valid_lines(tmp_path):
    path = write(tmp_path, [ITEMS[0], "", ITEMS[1]])
    assert read_choice_items(path) == ITEMS[:2]


@pytest.mark.parametrize("line, message", [
    ({"context": "a", "label": 0}, r"items.jsonl:2: 'choices' must be a list .* \(the line has no 'choices'\)"),
    ({"context": "a", "choices": ["x", "y"], "label": 2}, r"items.jsonl:2: label 2 is out of range for 2 choices"),
    ({"context": "a", "choices": ["x"], "label": 0}, r"items.jsonl:2: 'choices' must be a list of at least 2"),
    ({"context": "a", "choices": ["x", ""], "label": 0}, r"items.jsonl:2: every choice must be a non-empty string"),
    ({"context": "a", "choices": ["x", "y"], "label": True}, r"items.jsonl:2: 'label' must be an integer"),
    ({"choices": ["x", "y"], "label": 0}, r"items.jsonl:2: 'context' must be a string \(the line has no"),
    ("{not json", r"items.jsonl:2: invalid JSON"),
    ("[1, 2]", r"items.jsonl:2: expected a JSON object"),
])
def test_a_bad_line_is_one_error_naming_file_and_line(tmp_path, line, message):
    with pytest.raises(PlmlabError, match=message):
        read_choice_items(write(tmp_path, [ITEMS[0], line]))


def test_an_empty_or_missing_file_is_an_error(tmp_path):
    with pytest.raises(PlmlabError, match="no records"):
        read_choice_items(write(tmp_path, ["", "  "]))
    with pytest.raises(PlmlabError, match="no such data file"):
        read_choice_items(tmp_path / "missing.jsonl")


def test_a_model_without_an_lm_head_is_refused():
    model = plmlab.build_model(plmlab.Config.from_dict({**get_preset("gpt-tiny").to_dict(), "head": "none"}))
    tok = train_tokenizer(TEXTS, "gpt2", vocab_size=300)
    with pytest.raises(PlmlabError, match="needs a model with an LM or MLM head"):
        evaluate_choice(model, tok, ITEMS)
