"""`decoding`: greedy vs temperature vs top-k vs top-p sampling from the same trained model.

Holtzman et al. (2020, "The Curious Case of Neural Text Degeneration") show that maximisation
(greedy, beam) makes text that is bland and repetitive, plain sampling from the full
distribution makes incoherent text (its low-probability tail), and nucleus (top-p) sampling
sits between: diversity near human text without the tail. Three numbers measure it here, on
continuations of prompts cut from held-out documents:

* distinct-n (Li et al. 2016): distinct n-grams / all n-grams, over all samples of an arm;
* repetition rate: 1 - distinct 4-grams / 4-grams *within* each sample, averaged (Welleck et
  al. 2020's seq-rep-4): greedy loops show up here;
* the model's own perplexity of its samples (mean NLL of the sampled tokens given the prompt):
  low = the model finds the text likely (bland), high = tail tokens (incoherent).

One model is trained per seed and shared by every arm of that seed (saved in the study cache),
so arms differ only by the decoding rule; the seed also seeds the sampler.
"""

from __future__ import annotations

import math
import os
import uuid
from pathlib import Path

import torch

from ...generation import generate
from ...hf import load_pretrained, save_pretrained
from ...tokenizers import load_tokenizer
from .. import stats
from ..base import Arm, Experiment, PlotSpec, Summary
from ..evals import held_out_texts
from ..harness import TrainSpec, study_cache, train
from ..tables import means, table, values

SCALE = {  # preset, steps, batch, seq_len, prompts, prompt tokens, new tokens
    "smoke": ("gpt-tiny", 6, 4, 32, 3, 8, 12),
    "default": ("gpt-mini", 300, 16, 64, 24, 16, 48),
    "large": ("gpt-mini", 3000, 64, 256, 100, 32, 128),
}
ARMS = [Arm("greedy", {}), Arm("temperature-1.0", {"do_sample": True, "temperature": 1.0}),
        Arm("temperature-0.7", {"do_sample": True, "temperature": 0.7}),
        Arm("top-k-40", {"do_sample": True, "top_k": 40}), Arm("top-p-0.9", {"do_sample": True, "top_p": 0.9})]


def arms(scale: str) -> list[Arm]:
    return list(ARMS)


def shared_model(seed: int, scale: str, workdir: Path):
    """The seed's trained model and tokenizer: trained by the first arm, loaded by the others."""
    preset, steps, batch, seq_len = SCALE[scale][:4]
    folder = study_cache(workdir) / "models" / f"{scale}-s{seed}"
    if not folder.is_dir():
        trained = train(TrainSpec(preset=preset, steps=steps, batch_size=batch, seq_len=seq_len, seed=seed), workdir)
        tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        save_pretrained(trained.model, tmp, tokenizer=trained.tokenizer)
        os.rename(tmp, folder)  # atomic: a killed study leaves no half-saved model behind
    return load_pretrained(folder).eval(), load_tokenizer(folder)


def distinct_n(samples: list[list[int]], n: int) -> float:
    grams = [tuple(s[i:i + n]) for s in samples for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(samples: list[list[int]], n: int = 4) -> float:
    rates = []
    for s in samples:
        grams = [tuple(s[i:i + n]) for i in range(len(s) - n + 1)]
        if grams:
            rates.append(1 - len(set(grams)) / len(grams))
    return sum(rates) / len(rates) if rates else 0.0


@torch.no_grad()
def sample_nll(model, prompt: list[int], sample: list[int]) -> tuple[float, int]:
    """Total NLL (nats) of `sample`'s tokens given `prompt`, and their count."""
    ids = torch.tensor([prompt + sample])  # (1, P + S)
    logp = torch.log_softmax(model(ids).logits[0, len(prompt) - 1:-1].float(), dim=-1)  # (S, V)
    return float(-logp.gather(1, ids[0, len(prompt):, None]).sum()), len(sample)


def run(arm: Arm, seed: int, scale: str, workdir: Path) -> dict:
    _, _, _, _, n_prompts, prompt_tokens, new_tokens = SCALE[scale]
    model, tokenizer = shared_model(seed, scale, workdir)
    documents = [tokenizer.encode(t, add_special_tokens=False) for t in held_out_texts("builtin", n_prompts)]
    prompts = [ids[:prompt_tokens] for ids in documents]
    human = [sample_nll(model, ids[:prompt_tokens], ids[prompt_tokens:prompt_tokens + new_tokens])
             for ids in documents if len(ids) > prompt_tokens]
    samples, nll, count = [], 0.0, 0
    for i, prompt in enumerate(prompts):
        out = generate(model, [prompt], max_new_tokens=new_tokens, eos_token_id=None, seed=seed * 1000 + i,
                       **arm.params)
        sample = out[0].tolist()
        samples.append(sample)
        total, n = sample_nll(model, prompt, sample)
        nll, count = nll + total, count + n
    return {"metrics": {"distinct_1": distinct_n(samples, 1), "distinct_2": distinct_n(samples, 2),
                        "distinct_3": distinct_n(samples, 3), "repetition_4": repetition_rate(samples),
                        "sample_ppl": math.exp(nll / count), "samples": len(samples),
                        # the held-out text's own continuation: the paper's yardstick ("human" perplexity)
                        "human_ppl": math.exp(sum(t for t, _ in human) / sum(n for _, n in human))},
            "curves": {}, "example": tokenizer.decode(samples[0])}


def summarize(runs: dict[str, list[dict]]) -> Summary:
    columns, rows = table(runs, [("distinct_1", "distinct-1", 3), ("distinct_2", "distinct-2", 3),
                                 ("distinct_3", "distinct-3", 3), ("repetition_4", "repetition (4-gram)", 3),
                                 ("sample_ppl", "perplexity of samples", 1)], first="decoding")
    rep = {arm: values(runs, arm, "repetition_4") for arm in runs}
    ppl = {arm: values(runs, arm, "sample_ppl") for arm in runs}
    most_repetitive = max(runs, key=lambda a: stats.mean(rep[a]))
    human = stats.mean(values(runs, "greedy", "human_ppl"))
    closest = min(runs, key=lambda a: abs(math.log(stats.mean(ppl[a]) / human)))
    order = sorted(runs, key=lambda a: stats.mean(ppl[a]))
    verdict = (
        "Holtzman et al. report that greedy decoding degenerates into repetition, pure sampling into the "
        "incoherent tail, and top-p sits between. "
        f"Here the most repetitive rule is {most_repetitive} "
        f"({'as the paper predicts' if most_repetitive == 'greedy' else 'not greedy, unlike the paper'}); "
        f"{stats.compare('greedy', rep['greedy'], 'top-p-0.9', rep['top-p-0.9'], 'repetition rate')} "
        f"By the model's own perplexity of its samples the rules rank {' < '.join(order)}: "
        f"{stats.compare('top-p-0.9', ppl['top-p-0.9'], 'temperature-1.0', ppl['temperature-1.0'], 'sample perplexity')} "
        f"The held-out text's own continuations have perplexity {human:.1f} under the model; the rule whose "
        f"samples come closest to that is {closest} "
        f"({'as the paper found for nucleus sampling' if closest == 'top-p-0.9' else 'the paper found top-p closest'}). "
        "A small model trained for minutes has a flat distribution, so full-temperature samples are mostly "
        "tail (high perplexity, high distinct-n) and truncation (top-k, top-p, lower temperature) moves them "
        "toward greedy; the absolute numbers are not comparable to the paper's GPT-2-large figures."
    )
    plots = [PlotSpec("repetition.png", "within-sample 4-gram repetition", "bar", "repetition_4", ylabel="rate"),
             PlotSpec("distinct2.png", "distinct-2 over all samples", "bar", "distinct_2", ylabel="distinct-2"),
             PlotSpec("sample_ppl.png", "the model's perplexity of its own samples", "bar", "sample_ppl",
                      ylabel="perplexity")]
    return Summary(columns, rows, verdict, plots,
                   {"repetition_4": means(runs, "repetition_4"), "distinct_2": means(runs, "distinct_2"),
                    "sample_ppl": means(runs, "sample_ppl"), "human_ppl": human, "closest_to_human": closest,
                    "examples": {arm: runs[arm][0].get("example", "") for arm in runs}})


EXPERIMENT = Experiment(
    name="decoding",
    claim="greedy decoding repeats itself, full sampling wanders into the tail, top-p sits between",
    paper="Holtzman et al. 2020 (The Curious Case of Neural Text Degeneration, ICLR): greedy/beam text is "
          "repetitive, pure sampling incoherent; nucleus sampling comes closest to human text's perplexity "
          "and repetition, with GPT-2 Large (no figures quoted: not checked against a stored copy of the paper)",
    runtime="~2 min",
    arms=arms, run=run, summarize=summarize,
)
