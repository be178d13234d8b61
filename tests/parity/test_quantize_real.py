"""int8 on a real pretrained LLM (SmolLM2-135M-Instruct): the default weight-only scheme keeps
perplexity within 1 % of fp32 and greedy decoding close to it, where activation quantization
(`int8-dynamic`) does not. Tiny random and briefly trained models have no activation outliers,
so only real weights can show the difference (tests/real_weights.py)."""

from __future__ import annotations

import copy

import pytest
import torch

import plmlab
from plmlab.nn.quantize import quantize
from plmlab.pipelines import load_model_and_tokenizer

pytestmark = pytest.mark.real_weights

# Plain English prose, written for this test (about 250 tokens): text the model is fluent in.
PARAGRAPH = (
    "The small harbour town wakes up before the sun. Fishing boats leave the quay one after another, "
    "their engines loud in the cold air, while the bakers on the main street pull the first loaves out "
    "of their ovens. By seven o'clock the market square is full of stalls selling fruit, cheese, fresh "
    "fish and flowers, and the cafes have put their tables out on the pavement. Children walk to school "
    "in small groups, and older people sit on the benches by the water to read the newspaper and talk "
    "about the weather. In summer the town is crowded with visitors who come for the beaches and the "
    "boat trips to the islands, but in winter it is quiet, and most of the hotels close until spring. "
    "The people who live there all year say that this is the best time, when the streets belong to them "
    "again and the sea changes colour every hour. Many of them have never wanted to live anywhere else, "
    "although their children often move to the city to study and find work. Some of them come back "
    "years later to open a shop or a restaurant, and the town slowly changes with them."
)
PROMPTS = ["The capital of France is", "Here is a short recipe for pancakes:", "def fibonacci(n):"]
NEW_TOKENS = 16


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    """The fp32 model, its tokenizer, the paragraph's ids and fp32's perplexity and greedy tokens."""
    model, tokenizer = load_model_and_tokenizer(smollm2_dir)
    ids = torch.tensor([tokenizer.encode(PARAGRAPH)])
    return model, tokenizer, ids, perplexity(model, ids), greedy(model, tokenizer)


def perplexity(model, ids: torch.Tensor) -> float:
    """exp of the mean next-token loss over the paragraph (one window: it fits the context)."""
    with torch.no_grad():
        logits = model(ids).logits[0, :-1]  # (T-1, V)
    return torch.nn.functional.cross_entropy(logits.float(), ids[0, 1:]).exp().item()


def greedy(model, tokenizer) -> torch.Tensor:  # (prompts, NEW_TOKENS): one left-padded batch
    return plmlab.generate(model, [tokenizer.encode(p) for p in PROMPTS], max_new_tokens=NEW_TOKENS,
                           eos_token_id=None)


def test_int8_weight_only_holds_on_a_real_llm(smollm2):
    model, tokenizer, ids, fp32_ppl, fp32_tokens = smollm2
    assert 200 <= ids.shape[1] <= 320
    assert fp32_ppl < 30  # the model reads this paragraph fluently: the comparison means something
    q = quantize(copy.deepcopy(model), "int8")
    int8_ppl = perplexity(q, ids)
    assert abs(int8_ppl / fp32_ppl - 1) < 0.01, (fp32_ppl, int8_ppl)
    # greedy tokens: the first ones equal fp32's on every prompt, most of the rest too
    tokens = greedy(q, tokenizer)
    assert torch.equal(tokens[:, :4], fp32_tokens[:, :4]), (tokens, fp32_tokens)
    assert (tokens == fp32_tokens).float().mean().item() >= 0.75, (tokens, fp32_tokens)


def test_int8_dynamic_is_what_breaks_it(smollm2):
    """The reason the default is weight-only: with activations rounded to int8 too, the same
    paragraph's perplexity is far above fp32's (activation outliers)."""
    model, _, ids, fp32_ppl, _ = smollm2
    assert perplexity(quantize(copy.deepcopy(model), "int8-dynamic"), ids) > 1.5 * fp32_ppl
