"""plmlab on a real published LLM -- SmolLM2-135M-Instruct (LLaMA family: GQA, tied embeddings,
byte-level BPE, ChatML), fp32 (tests/real_weights.py) -- against transformers: logits on a padded
batch, 20 greedy tokens, the chat template, tokenizer ids on code, digits and unicode."""

from __future__ import annotations

import pytest
import torch

import plmlab
from plmlab.tokenizers.chat import encode_chat, render_chat

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.real_weights

TEXTS = [
    "The capital of France is",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "Prices rose 3.5% to $1,234.56 in 2024-01-31 -- naïve café, 東京, Ελληνικά, emoji 🚀🦙.",
]
MORE_TEXT = [
    "  leading spaces,\ttabs\t\tand\n\n\nblank lines   ",
    "x = [1, 22, 333, 4444, 55555]  # 6.02e23",
    "<|im_start|>user\nhi<|im_end|>\n",  # the specials written as text are specials
    "I've been 'told he's there, 'RE you sure?",
]
MESSAGES = [
    [{"role": "user", "content": "What does str.split do?"}],
    [{"role": "system", "content": "Answer in one line."}, {"role": "user", "content": "Name a prime."},
     {"role": "assistant", "content": "7"}, {"role": "user", "content": "And  café 你好?"}],
]


@pytest.fixture(scope="module")
def models(smollm2_dir):
    ours = plmlab.load_pretrained(smollm2_dir)
    theirs = transformers.LlamaForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    return ours, theirs


@pytest.fixture(scope="module")
def tokenizers(smollm2_dir):
    return plmlab.load_tokenizer(smollm2_dir), transformers.AutoTokenizer.from_pretrained(smollm2_dir)


def test_tokenizer_ids_equal_transformers(tokenizers):
    ours, theirs = tokenizers
    for text in TEXTS + MORE_TEXT:
        for specials in (True, False):
            ids = theirs(text, add_special_tokens=specials).input_ids
            assert ours.encode(text, add_special_tokens=specials) == ids, (text, specials)
        assert ours.decode(ids, skip_special_tokens=False) == theirs.decode(ids, skip_special_tokens=False)
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True)


def _padded(tokenizer, side: str):
    """The texts as one batch, padded on `side`: (ids, mask, position_ids)."""
    rows = [tokenizer(t, add_special_tokens=False).input_ids for t in TEXTS]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), 2, dtype=torch.long)  # (B, T), pad = <|im_end|> as the config's
    mask = torch.zeros_like(ids)
    for b, row in enumerate(rows):
        at = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[b, at], mask[b, at] = torch.tensor(row), 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


@pytest.mark.parametrize("side", ["left", "right"])
@torch.no_grad()
def test_logits_equal_transformers_on_a_padded_batch(models, tokenizers, side):
    ours, theirs = models
    ids, mask, positions = _padded(tokenizers[1], side)
    assert mask.sum(-1).unique().numel() == len(TEXTS)  # rows of different lengths: real padding
    expected = theirs(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    got = ours(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    keep = mask.bool()
    assert expected[keep].abs().max() > 1  # real logits, not near-zero noise
    torch.testing.assert_close(got[keep], expected[keep], atol=1e-4, rtol=1e-4)
    assert torch.equal(got[keep].argmax(-1), expected[keep].argmax(-1))


@torch.no_grad()
def test_greedy_20_tokens_equal_transformers_on_a_left_padded_batch(models, tokenizers):
    ours, theirs = models
    tok = tokenizers[1]
    prompts = [TEXTS[1], tok.apply_chat_template(MESSAGES[0], add_generation_prompt=True, tokenize=False)]
    rows = [tok(p, add_special_tokens=False).input_ids for p in prompts]
    width = max(map(len, rows))
    ids = torch.tensor([[2] * (width - len(r)) + r for r in rows])  # (2, T), left-padded as generation pads
    mask = (torch.arange(width) >= torch.tensor([[width - len(r)] for r in rows])).long()
    expected = theirs.generate(ids, attention_mask=mask, max_new_tokens=20, do_sample=False, eos_token_id=2,
                               pad_token_id=2)[:, width:]  # (2, 20): neither row ends its turn that soon
    new = plmlab.generate(ours, rows, max_new_tokens=20, do_sample=False, eos_token_id=2)  # pads itself
    assert expected.shape == (2, 20) and new.tolist() == expected.tolist(), tok.batch_decode(expected)


def test_chat_template_renders_as_transformers(tokenizers):
    ours, theirs = tokenizers
    for messages in MESSAGES:
        for gen in (True, False):
            text = theirs.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False)
            assert render_chat(ours, messages, add_generation_prompt=gen) == text
            ids = theirs.apply_chat_template(messages, add_generation_prompt=gen, tokenize=True, return_dict=False)
            assert encode_chat(ours, messages, add_generation_prompt=gen) == list(ids)
