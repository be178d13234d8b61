"""What every study does: train a small model through the real Trainer, in-process, and time it.

    spec = TrainSpec(preset="gpt-tiny", overrides={"norm": "rmsnorm"}, steps=40, seed=1)
    trained = train(spec, workdir / "run", cache=out / "cache")
    trained.val_loss, trained.curve[-1]["loss"], trained.step_seconds, trained.model

`train` is `plmlab pretrain`'s set-up (train/pretrain_setup.prepare: corpus, tokenizer, token
shards, objective, seeded model) and its Trainer (train/loop.py), with what a study does not
need left out: no checkpoints, no metrics.jsonl, no final/ directory, no end-of-run sample.
The curve comes from the Trainer's own per-step records. One tokenizer per (corpus, style,
vocabulary) is trained once and cached under `cache/`, so every arm and seed of a study sees
the same one (and the study's timing excludes tokenizer training).
"""

from __future__ import annotations

import hashlib
import os
import signal
import statistics
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.corpus import corpus_documents
from ..data.files import remove_entry
from ..errors import PlmlabError
from ..tokenizers import train_tokenizer
from ..train.baselines import unigram_baseline, validation_pairs
from ..train.build import build_trainer
from ..train.data import count_tokens, fixed_batches
from ..train.options import PretrainOptions
from ..train.parallel import Dist
from ..train.pretrain_setup import prepare
from ..train.rundir import RunDir
from ..train.setup import build_config

# Steps at the start whose time is left out of `step_seconds` (allocator and kernel warm-up).
WARM_STEPS = 2
# The studies' optimizer and schedule, set in their options so that what a run records
# (`trained.setup.options`) is what it ran: AdamW and cosine, the recipe every study was
# designed and measured with (pretraining's default became Muon + WSD later; a study compares
# arms under one recipe, and moving them all is a change of its design, not of the harness).
STUDY_RECIPE = {"optimizer": "adamw", "schedule": "cosine"}


@dataclass(frozen=True)
class TrainSpec:
    """One training run of a study (the `plmlab pretrain` options a study varies)."""

    preset: str
    objective: str = "clm"
    objective_options: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # Config fields over the preset
    steps: int = 50
    batch_size: int = 16
    grad_accum: int = 1
    seq_len: int = 64
    lr: float = 2e-3
    warmup: int | None = None  # None: the trainer's default (steps // 10, at most 100)
    seed: int = 0
    corpus: str = "builtin"  # builtin | builtin:docs (data/docs_corpus.py)
    vocab_size: int | None = None  # None: the preset's
    eval_batches: int = 8
    eval_every: int = 0  # 0: evaluate at the end only
    max_bad_steps: int = 5  # non-finite steps in a row before the trainer stops the run
    clip: float = 1.0


@dataclass
class Trained:
    model: torch.nn.Module  # in eval mode
    tokenizer: Any
    config: Any
    setup: Any  # train/pretrain_setup.PretrainSetup: objective, token data, resolved options
    curve: list[dict]  # per step: step, tokens, seconds (cumulative training time), loss
    evals: list[dict]  # per evaluation: step, val_loss, val_* accuracies
    params: int
    # The validation targets' cross-entropy under the training split's token frequencies (the
    # unigram baseline `plmlab pretrain` reports); None where val_loss is not a token loss.
    unigram_loss: float | None = None

    @property
    def val_loss(self) -> float | None:
        return self.evals[-1]["val_loss"] if self.evals else None

    @property
    def step_seconds(self) -> float:
        """Median seconds per optimizer step, warm-up steps left out."""
        times = [b["seconds"] - a["seconds"] for a, b in zip(self.curve, self.curve[1:])][WARM_STEPS:]
        return statistics.median(times) if times else self.curve[-1]["seconds"]


class _CurveLog:
    """Stands in for metrics.jsonl: keeps the records the Trainer writes, in memory."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def write(self, record: dict) -> None:
        self.records.append(dict(record))

    def close(self) -> None:
        pass


def study_cache(workdir: Path) -> Path:
    """The study's shared cache in the runner's layout: OUT/NAME/cache for any folder under
    OUT/NAME/work/ (a run's scratch and its sub-folders); WORKDIR/cache outside that layout."""
    workdir = Path(workdir)
    for folder in workdir.parents:
        if folder.name == "work":
            return folder.parent / "cache"
    return workdir / "cache"


def pretrain_options(spec: TrainSpec, workdir: Path, cache: Path | None = None) -> PretrainOptions:
    """The `plmlab pretrain` options of `spec`: quiet, CPU, no checkpoints, the study's tokenizer."""
    cache = study_cache(workdir) if cache is None else cache
    return PretrainOptions(
        out=str(workdir), preset=spec.preset, objective=spec.objective,
        objective_options=dict(spec.objective_options), overrides=dict(spec.overrides),
        corpus=[] if spec.corpus == "builtin" else [spec.corpus],
        tokenizer=str(tokenizer_dir(spec, cache)), vocab_size=spec.vocab_size, seq_len=spec.seq_len,
        batch_size=spec.batch_size, grad_accum=spec.grad_accum, max_steps=spec.steps, lr=spec.lr,
        warmup=spec.warmup, seed=spec.seed, eval_every=spec.eval_every, eval_batches=spec.eval_batches,
        save_every=0, max_bad_steps=spec.max_bad_steps, clip=spec.clip, device="cpu", progress="none",
        sample_tokens=0, overwrite=True, optimizer=STUDY_RECIPE["optimizer"], schedule=STUDY_RECIPE["schedule"])


def tokens_per_example(spec: TrainSpec, workdir: Path, cache: Path | None = None, batches: int = 4) -> float:
    """Mean real (unpadded) input tokens per training example of `spec`'s objective: what a
    study needs to give arms with shorter inputs (RoBERTa's sentence pairs) equal tokens."""
    setup = prepare(pretrain_options(spec, workdir, cache), RunDir(workdir), Dist())
    made = fixed_batches(setup.objective, setup.train_data, spec.seed, spec.batch_size, batches)
    return sum(count_tokens(b) for b in made) / max(1, sum(len(b["input_ids"]) for b in made))


def train(spec: TrainSpec, workdir: Path, cache: Path | None = None) -> Trained:
    """Train `spec` through the real Trainer; nothing is written under `workdir`. `cache`
    (default: study_cache(workdir)) holds the tokenizer every arm shares."""
    options = pretrain_options(spec, workdir, cache)
    dist = Dist()
    setup = prepare(options, RunDir(workdir), dist)
    trainer = build_trainer(setup.task, setup.model, setup.options.run_spec(), setup.device, dist, log=_CurveLog())
    signum = trainer.fit()
    if signum is not None:  # a half-trained arm must not be recorded as a finished run
        raise PlmlabError(f"interrupted by {signal.Signals(signum).name} at step {trainer.state.step}; this run is "
                          "not saved (plmlab experiment run again to redo it; finished runs are kept)")
    setup.model.eval()
    log = trainer.log
    curve = [{"step": r["step"], "tokens": r["tokens"], "seconds": r["elapsed_s"], "loss": r["loss"]}
             for r in log.records]
    evals = [{"step": r["step"], **{k: v for k, v in r.items() if k.startswith("val_")}}
             for r in log.records if "val_loss" in r]
    return Trained(setup.model, setup.tokenizer, setup.config, setup, curve, evals, setup.model.num_parameters(),
                   unigram_loss(setup))


def unigram_loss(setup) -> float | None:
    """What a model that learned only token frequencies scores on this run's validation targets."""
    pairs = validation_pairs(setup)
    if pairs is None:
        return None
    stream, _, targets, vocab = pairs
    return unigram_baseline(stream, targets, vocab)["loss"] if len(targets) else None


def tokenizer_dir(spec: TrainSpec, cache: Path) -> Path:
    """The study's tokenizer for (corpus, style, vocabulary): trained once, saved atomically."""
    config = build_config(PretrainOptions(out="", preset=spec.preset, overrides=dict(spec.overrides),
                                          vocab_size=spec.vocab_size).resolved())
    key = hashlib.sha256(spec.corpus.encode()).hexdigest()[:8]
    folder = Path(cache) / "tokenizers" / f"{config.tokenizer}-{config.vocab_size}-{key}"
    if folder.is_dir():
        return folder
    documents = corpus_documents(spec.corpus)
    tokenizer = train_tokenizer((s for doc in documents for s in doc), config.tokenizer, config.vocab_size)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(tmp)
    try:
        os.rename(tmp, folder)  # atomic: a killed study leaves no half-written tokenizer
    except OSError:  # saved meanwhile by another process
        remove_entry(tmp)
    return folder


def curve_points(curve: list[dict], x: str = "step", y: str = "loss", every: int = 1) -> list[list[float]]:
    """[[x, y], ...] of a run's curve, every `every`-th point (and the last): what a run record keeps."""
    picked = curve[::every] + ([curve[-1]] if curve and (len(curve) - 1) % every else [])
    return [[p[x], p[y]] for p in picked]
