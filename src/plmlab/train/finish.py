"""The end of a pretraining run: the final evaluation, the n-gram baselines, DIR/final, a
generated sample and the objective's demonstration (fill-mask, span filling, fill-blanks)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..evaluate.builtin import evaluate_suite
from ..families import family_of
from ..generation import generate
from .baselines import ngram_baselines, validation_pairs
from .data import count_targets
from .demo import demonstrate
from .metrics import METRICS, read_metrics
from .model_card import architecture_lines
from .next_steps import next_steps
from .saving import save_final


def finish(result, trainer, setup, model: torch.nn.Module, device: torch.device, out: Path) -> None:
    """Fill `result` and write final/ (rank 0; `model` is a plain, unsharded one on `device`)."""
    o, val_batches = setup.options, setup.task.val_batches
    if val_batches:
        ensure_final_eval(trainer)
        result.val_loss = trainer.last_eval[1]["val_loss"]
        result.val_ppl = math.exp(min(result.val_loss, 700.0))
        result.val_tokens = sum(count_targets(b) for b in val_batches)
        if setup.objective.causal_lm_baselines:
            result.baselines = ngram_baselines(*validation_pairs(setup))
    losses = [r["loss"] for r in read_metrics(out / METRICS) if isinstance(r["loss"], float)]
    result.train_loss = losses[-1] if losses else None
    result.final_dir = str(save_final(model, out, setup.tokenizer, card=card_facts(result, setup, out / "final")))
    if o.sample_tokens and family_of(setup.config).continues_prompt and setup.tokenizer.eos_id is not None:
        result.sample = sample(model, setup, device)  # a continuation of the prompt: decoders only
    if trainer.last_eval is not None:
        result.accuracies = {k: v for k, v in trainer.last_eval[1].items() if k.endswith("_accuracy")}
    result.demo = demonstrate(model, setup.tokenizer, o.objective, setup.val_data, device, o.seed)
    if o.suite == "builtin":  # after final/ is written: the score card never costs the model
        model.eval()
        result.score_card = evaluate_suite(model, setup.tokenizer, seed=o.seed).metrics


def card_facts(result, setup, final: Path) -> dict:
    """The model card's facts (train/model_card.py) for a pretraining run's final/."""
    c, o = setup.config, setup.options
    rows = {"architecture": "; ".join(architecture_lines(c)), "parameters": f"{result.params:,}",
            "preset": o.preset or "none (a config file)", "objective": o.objective,
            "tokenizer": f"{setup.tokenizer.vocab_size:,} ids, {c.tokenizer} style",
            "corpus": ", ".join(o.corpus) or "built-in: the documentation that ships with Python",
            "training": f"{result.step:,} steps, {result.tokens:,} tokens ({o.batch_size * o.grad_accum} x "
                        f"{o.seq_len} tokens a step), {o.optimizer}, lr {o.lr:g}, {o.schedule} schedule, seed {o.seed}"}
    if result.val_loss is not None:
        rows["validation loss"] = (f"{result.val_loss:.4f} nats/token (perplexity {result.val_ppl:,.2f}) on "
                                   f"{result.val_tokens:,} held-out tokens" + "".join(
                                       f"; {name} baseline {b['loss']:.4f}" for name, b in result.baselines.items()))
    rows["made with"] = f"plmlab {result.machine['plmlab']}, torch {result.machine['torch']}"
    steps = next_steps(c, final)
    return {"title": f"{o.preset or 'A model'} pretrained with plmlab",
            "about": f"A {c.arch} language model pretrained from scratch with the {o.objective} objective.",
            "rows": rows, "path": str(final), "try": steps[0] if steps else None}


def ensure_final_eval(trainer) -> None:
    """Evaluate the last step unless the loop just did (collectives under FSDP: every rank calls it)."""
    if trainer.last_eval is None or trainer.last_eval[0] != trainer.state.step:
        trainer.evaluate()


def sample(model, setup, device: torch.device) -> str:
    o, tokenizer = setup.options, setup.tokenizer
    prompt = [tokenizer.eos_id] + tokenizer.encode(o.prompt, add_special_tokens=False)
    room = setup.config.max_positions - len(prompt)
    if room <= 0:
        return ""
    model.eval()
    names = model.config.languages if model.config.n_languages else []  # an XLM decoder: its first language
    ids = generate(model, torch.tensor([prompt], device=device), max_new_tokens=min(o.sample_tokens, room),
                   do_sample=True, temperature=0.8, top_k=40, seed=o.seed, language=names[0] if names else None)
    return o.prompt + tokenizer.decode(ids[0].tolist())
