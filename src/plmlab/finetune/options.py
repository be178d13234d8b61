"""What a fine-tuning run is: `FinetuneOptions`, mirroring `plmlab finetune`'s flags.

Epoch-based options map to the Trainer's steps: `epochs` x ceil(examples / batch_size) / (grad_accum
x world) steps (a step is `grad_accum` micro-batches of `batch_size` examples on each rank),
`warmup` is a fraction of them, the learning rate decays linearly to 0 (BERT, appendix A.3)
from its peak `lr`. Left out, `lr` and `epochs` are derived from the model's width and the data's
size (`with_defaults`, below; the run prints what it derived),
the evaluation set is scored at the end of every epoch, and a checkpoint is written every
`save_every` steps (default: every epoch). The record is frozen and checked on creation, so
the Python API refuses what the CLI refuses.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import PlmlabError, warn
from ..train.lora import LoraOptions
from ..train.options import (DECAY_SHAPES, DEFAULTS, MUON_DTYPES, OPTIMIZERS, PRECISIONS, PROGRESS, SCHEDULES,
                             STRATEGIES, LoopOptions, OptimizerSpec, ParallelSpec, RunSpec, ScheduleSpec, check_device,
                             check_seed)

# May differ from the run's values on --resume; everything else defines the run.
# (checkpoints hold the full state, so a run resumes under either strategy; the length may
# change as pretraining's --max-steps may, and moves the schedule's horizon: `check_resume_agrees`)
LENGTH = ("max_steps", "epochs")
CHANGEABLE = frozenset({"out", "device", "progress", "save_every", "keep_last", "threads", "strategy", "muon_dtype",
                        *LENGTH})


@dataclass(frozen=True)
class FinetuneOptions:
    model: str  # pretrained checkpoint directory (plmlab or Hugging Face)
    task: str  # a registered task (finetune/tasks.py)
    train: str  # training data (CSV or JSONL)
    out: str  # run directory: metrics.jsonl, checkpoints/, final/, summary.json
    eval: str | None = None  # evaluation data, scored after every epoch
    tokenizer: str | None = None  # default: the model directory's
    epochs: int | None = None  # passes over the data; None: default_epochs(min_epochs, the steps of an epoch)
    max_steps: int | None = None  # optimizer steps, instead of epochs (the schedule spans them; eval every epoch and at the end)
    min_epochs: int = 3  # the default epochs of a large data set (BERT, appendix A.3: 2 .. 4)
    batch_size: int = 16  # examples per micro-batch per rank
    grad_accum: int = 1  # micro-batches per optimizer step: a step sees batch_size x grad_accum x world examples
    lr: float | None = None  # peak learning rate; None: default_lr(base_lr, the model's width, LoRA or not)
    base_lr: float | None = None  # the default lr at width 768, inversely proportional to the width; None: the task's
    weight_decay: float = 0.01
    beta1: float = 0.9  # AdamW's betas: BERT's fine-tuning (appendix A.2), where pretraining takes 0.9 / 0.95
    beta2: float = 0.999
    warmup: float = 0.1  # fraction of the steps
    # AdamW and a linear decay to min_lr 0 (BERT, appendix A.3); pretraining's optimizers and
    # schedules are there to choose, with pretraining's defaults for their own knobs
    optimizer: str = "adamw"  # adamw | muon
    schedule: str = "linear"  # linear | cosine | wsd | constant
    min_lr: float = 0.0
    muon_lr: float = DEFAULTS["muon_lr"]
    muon_dtype: str = DEFAULTS["muon_dtype"]
    decay_fraction: float = DEFAULTS["decay_fraction"]
    decay_shape: str = DEFAULTS["decay_shape"]
    clip: float = 1.0  # max gradient norm; 0: no clipping
    max_length: int | None = None
    truncate: bool = False
    labels: str | None = None  # comma-separated label names, in id order
    seed: int = 0
    device: str | None = None  # auto | cpu | cuda | cuda:N (None: auto)
    precision: str = "auto"  # auto | fp32 | bf16-mixed | fp16-mixed (train/precision.py)
    strategy: str = "ddp"  # under torchrun: ddp | fsdp (FSDP2 fully_shard; train/parallel.py)
    progress: str = "auto"  # auto | bar | plain | none
    save_every: int | None = None  # steps between checkpoints (None: every epoch; 0: only at the end)
    keep_last: int = 1  # checkpoints kept; 0: all
    threads: int | None = None  # CPU threads for torch
    resume: bool = False  # continue from the newest complete checkpoint in `out`
    overwrite: bool = False  # start over in an `out` that already holds a run
    lora: LoraOptions | None = None  # train LoRA adapters only (train/lora.py); None: every weight
    extra: dict = field(default_factory=dict)  # task-specific options

    def __post_init__(self) -> None:
        for name in ("epochs", "min_epochs", "batch_size", "grad_accum"):
            value = getattr(self, name)
            if name == "epochs" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PlmlabError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        for name in ("lr", "base_lr", "weight_decay", "clip", "min_lr", "muon_lr"):
            value = getattr(self, name)
            if name in ("lr", "base_lr") and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise PlmlabError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value!r}")
        for name in ("lr", "base_lr"):
            if getattr(self, name) == 0:
                raise PlmlabError(f"--{name.replace('_', '-')} must be positive, got 0")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise PlmlabError(f"--{name} must be in [0, 1), got {value!r}")
        if not isinstance(self.warmup, (int, float)) or not 0 <= self.warmup <= 1:
            raise PlmlabError(f"--warmup is a fraction of the steps, in [0, 1]; got {self.warmup!r}")
        if self.max_steps is not None:
            if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1:
                raise PlmlabError(f"--max-steps must be a positive integer, got {self.max_steps!r}")
            if self.epochs is not None:
                raise PlmlabError("pass --epochs or --max-steps, not both")
        for name in ("save_every", "max_length", "threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise PlmlabError(f"--{name.replace('_', '-')} must be an integer >= 0, got {value!r}")
        if self.keep_last < 0:
            raise PlmlabError(f"--keep-last must be 0 or more, got {self.keep_last}")
        for name, choices in (("precision", PRECISIONS), ("progress", PROGRESS), ("strategy", STRATEGIES),
                              ("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("muon_dtype", MUON_DTYPES),
                              ("decay_shape", DECAY_SHAPES)):
            if getattr(self, name) not in choices:
                raise PlmlabError(f"--{name.replace('_', '-')} must be one of {', '.join(choices)}, "
                                  f"not {getattr(self, name)!r}")
        self._check_optimizer()
        if self.lora is not None and not isinstance(self.lora, LoraOptions):
            raise PlmlabError(f"lora must be LoraOptions or None, got {type(self.lora).__name__}")
        check_seed(self.seed)
        check_device(self.device)

    def _check_optimizer(self) -> None:
        if self.muon_lr == 0:
            raise PlmlabError("--muon-lr must be positive, got 0")
        if not (isinstance(self.decay_fraction, (int, float)) and 0 < self.decay_fraction <= 1):
            raise PlmlabError(f"--decay-fraction must be in (0, 1], got {self.decay_fraction!r}")
        if self.optimizer == "muon" and self.strategy == "fsdp":  # as pretraining (train/options.py)
            raise PlmlabError("--optimizer muon needs whole weight matrices, which --strategy fsdp shards; "
                              "use --strategy ddp or --optimizer adamw")

    def run_spec(self, steps_per_epoch: int) -> RunSpec:
        """What train/build.py builds from these options (lr and epochs resolved: `with_defaults`):
        `max_steps` or `epochs` x `steps_per_epoch` steps, `warmup` a fraction of them, an
        evaluation at every epoch's end, a checkpoint every `save_every` steps (None: every epoch)."""
        steps = self.max_steps or self.epochs * steps_per_epoch
        warmup = max(1, int(self.warmup * steps)) if self.warmup > 0 else 0
        optimizer = OptimizerSpec(self.optimizer, self.lr, self.weight_decay, (self.beta1, self.beta2),
                                  self.muon_lr, self.muon_dtype)
        schedule = ScheduleSpec(self.schedule, self.lr, warmup, steps, self.min_lr, self.decay_fraction,
                                self.decay_shape)
        save_every = steps_per_epoch if self.save_every is None else self.save_every
        loop = LoopOptions(steps, self.clip, eval_every=steps_per_epoch, save_every=save_every)
        parallel = ParallelSpec(self.precision, self.strategy)
        return RunSpec(optimizer, schedule, loop, parallel, self.batch_size, self.grad_accum, self.progress)

    def to_dict(self) -> dict[str, Any]:
        """The run's settings as stored in a checkpoint (without resume / overwrite)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("resume", "overwrite")}

    def check_resume_agrees(self, stored: dict[str, Any]) -> None:
        ours = self.to_dict()
        # Task options compare where both runs name them (the CLI fills in every task's defaults).
        ours["extra"] = {k: v for k, v in ours["extra"].items() if k in (stored.get("extra") or {})}
        stored = {**stored, "extra": {k: v for k, v in (stored.get("extra") or {}).items() if k in ours["extra"]}}
        differ = [k for k in ours if k not in CHANGEABLE and k in stored and stored[k] != ours[k]]
        if differ:
            shown = ", ".join(f"{k} {ours[k]!r} (the run has {stored[k]!r})" for k in differ)
            raise PlmlabError(f"a resumed fine-tune keeps its settings, but {shown}; "
                              "start a new run (another --out) to change them")
        if any(k in stored and stored[k] != ours[k] for k in LENGTH):
            was = ", ".join(f"{k.replace('_', '-')} {stored.get(k)}" for k in LENGTH if stored.get(k) is not None)
            now = ", ".join(f"--{k.replace('_', '-')} {ours[k]}" for k in LENGTH if ours[k] is not None)
            warn(f"warning: {now} (the run had {was}) moves the learning-rate schedule's horizon: "
                 "the decay from here on follows the new length")


# The defaults of a run's length and rate (`with_defaults`), measured on the examples/ data with the
# -mini models pretrained 200 steps on a CPU (bench/results/finetune_defaults.md). BERT's
# fine-tuning rates (2e-5 .. 5e-5 for 2 .. 4 epochs, appendix A.3) are for width 768 and large
# data sets; at them bert-mini stays at one class. The rate is inversely proportional to the
# width, as ELECTRA's fine-tuning rates are (Clark et al. 2020, table 7: Small, width 256,
# 3e-4; Base, 768, 1e-4; Large, 1024, 5e-5) and muP's for Adam: `base_lr` at width 768, the
# task's own (DEFAULT_BASE_LR; T5's text2text 3e-4, SFT's 1e-4, DPO's 1e-5) unless given. LoRA
# trains a low-rank update from zero and takes LORA_SCALE x that (the LoRA paper's RoBERTa-base
# runs use 4e-4 .. 5e-4 where full fine-tuning uses 1e-5 .. 3e-5). A small data set is passed
# over more often: the run has at least MIN_STEPS optimizer steps (within MAX_EPOCHS epochs).
REFERENCE_WIDTH = 768
DEFAULT_BASE_LR = 1e-4
LORA_SCALE = 10.0
MIN_STEPS = 200
MAX_EPOCHS = 20


def default_lr(base_lr: float, width: int, lora: bool = False) -> float:
    """`base_lr` x 768 / width, x LORA_SCALE under LoRA, to two significant digits (as one would type it)."""
    return float(f"{base_lr * REFERENCE_WIDTH / width * (LORA_SCALE if lora else 1.0):.2g}")


def default_epochs(min_epochs: int, steps_per_epoch: int) -> int:
    """`min_epochs`, or more -- up to MAX_EPOCHS -- for MIN_STEPS optimizer steps on a small data set."""
    return max(min_epochs, min(MAX_EPOCHS, math.ceil(MIN_STEPS / max(steps_per_epoch, 1))))


def with_defaults(options: FinetuneOptions, width: int, steps_per_epoch: int,
                  task_base_lr: float = DEFAULT_BASE_LR) -> tuple[FinetuneOptions, list[str]]:
    """(the options with `lr` and `epochs` set, a line for each one derived here rather than given):
    what the run trains with, records in its checkpoints (a resume derives the same) and prints.
    `task_base_lr`: the task's rate at width 768, where the options name none."""
    lines, fields = [], {}
    if options.lr is None:
        base = task_base_lr if options.base_lr is None else options.base_lr
        fields["lr"] = default_lr(base, width, options.lora is not None)
        lora = f" x {LORA_SCALE:g} under LoRA" if options.lora is not None else ""
        lines.append(f"lr {fields['lr']:g} (the default: {base:g} x {REFERENCE_WIDTH} / width {width}{lora}; "
                     "--lr sets it)")
    if options.epochs is None and options.max_steps is None:
        fields["epochs"] = default_epochs(options.min_epochs, steps_per_epoch)
        lines.append(f"epochs {fields['epochs']} (the default: {options.min_epochs}, or more for {MIN_STEPS} steps of "
                     f"{steps_per_epoch} an epoch; --epochs sets it)")
    return dataclasses.replace(options, **fields), lines
