"""What a pretraining run is: `PretrainOptions`, mirroring `plmlab pretrain`'s flags.

Fields left as None take their value from `DEFAULTS` on a new run and from the run itself on
`resume`, so `PretrainOptions(out="runs/x", resume=True)` continues a run as it was started.
An option given explicitly on resume must agree with the run, except those in `CHANGEABLE`
(where to log and save, how long to go on, which device): changing the data, the model or
the optimisation midway would make the resumed run a different run.

The record is frozen: `resolved()` returns a new, checked one, and `pretrain` fills the last
two values that need the model and device (seq_len, grad_accum from --global-batch-tokens)
before the Trainer starts; nothing changes it afterwards (the OOM back-off's smaller
micro-batch lives in the trainer's state).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from ..errors import PlmlabError

# Defaults sized for the `<family>-mini` presets on a 2-core CPU (`make pretrain`: gpt-mini on
# the built-in corpus in a few minutes); they are sane starting points for bigger models too.
DEFAULTS: dict[str, Any] = {
    "preset": None, "objective": "clm", "objective_options": {}, "corpus": [], "encoding_errors": "strict",
    "config_file": None, "overrides": {}, "tokenizer": None, "vocab_size": None,
    "seq_len": None,  # None: min(max_positions, MAX_DEFAULT_SEQ_LEN[device type])
    "batch_size": 16, "grad_accum": 1, "max_steps": 600,
    "lr": 2e-3, "min_lr": None,  # None: lr / 10
    "warmup": None,  # None: min(100, max_steps // 10)
    "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95, "clip": 1.0, "seed": 0,
    # optimizer and schedule (train/optim.py, muon.py). Muon: measured on gpt-mini (bench/speedrun.py,
    # README "Optimizers and schedules"), it reaches a given loss in far fewer steps than AdamW.
    # Warmup-stable-decay with a 1-sqrt decay over the last 20 %: on equal tokens it beat cosine on
    # gpt-mini and llama-mini at 150 and 600 steps (bench/results/tune_recipe.md).
    "optimizer": "muon", "muon_lr": 0.02, "schedule": "wsd", "decay_fraction": 0.2, "decay_shape": "1-sqrt",
    # Newton-Schulz's dtype: auto = bf16 where bf16 matmul is native (CUDA, AVX512-BF16 / AMX CPUs), else fp32
    # (train/muon.py: bf16 on an AVX2 CPU made a Muon step ~6x an AdamW step).
    "muon_dtype": "auto",
    "save_every": 200, "eval_every": 100, "eval_batches": 20, "keep_last": 2,
    "max_bad_steps": 5, "precision": "auto", "device": "auto", "threads": None,
    "progress": "auto", "sample_tokens": 48, "prompt": "The function returns", "tensorboard": False,
    "suite": None,  # "builtin": score the final model on the built-in multiple-choice suite (evaluate/builtin.py)
    # scale and precision (train/parallel.py, precision.py)
    "strategy": "ddp", "compile": False, "activation_checkpointing": False, "global_batch_tokens": None,
    "oom_backoff": False, "peak_flops": None,
    "init_from": None,  # a new run from another run's weights (train/init_from.py); stored as an absolute path
}
# A run saved before an option existed ran with these values (not today's defaults) and
# resumes with them.
LEGACY: dict[str, Any] = {"optimizer": "adamw", "muon_lr": 0.02, "schedule": "cosine", "decay_fraction": 0.2,
                          "decay_shape": "linear", "muon_dtype": "bf16"}  # torch.optim.Muon's bf16
OPTIMIZERS = ("adamw", "muon")
SCHEDULES = ("cosine", "wsd", "linear", "constant")  # train/optim.py's schedule(); constant: after the warmup
DECAY_SHAPES = ("linear", "1-sqrt")
MUON_DTYPES = ("auto", "bf16", "fp32")  # train/muon.py's NS_DTYPES (checked here without torch)
# The run flags every training verb shares, declared once (the CLI and both option records use them).
PRECISIONS = ("auto", "fp32", "bf16", "bf16-mixed", "fp16-mixed")  # train/precision.py
STRATEGIES = ("ddp", "fsdp")  # under torchrun (train/parallel.py)
PROGRESS = ("auto", "bar", "plain", "none")  # train/metrics.py's Progress
# A CPU spends its few FLOPs better on more, shorter sequences; a GPU takes the usual context.
MAX_DEFAULT_SEQ_LEN = {"cpu": 128, "cuda": 1024}
# May differ from the run's values on resume; everything else defines the run. (The corpus
# may move: its content is checked against the run's fingerprint instead of its paths; a run
# moved to another machine may need another Newton-Schulz dtype, as it may need another device.)
CHANGEABLE = frozenset({"max_steps", "save_every", "eval_every", "eval_batches", "keep_last", "device", "muon_dtype",
                        "threads", "progress", "sample_tokens", "prompt", "max_bad_steps", "corpus", "suite",
                        "tensorboard", "strategy", "compile", "activation_checkpointing", "oom_backoff",
                        "peak_flops"})


# ---------------------------------------------------------------------------- what the builder builds
# A dataclass per concern, produced by every stage's options (PretrainOptions, FinetuneOptions:
# `optimizer_spec()`, `schedule_spec()`, `parallel_spec()`) and turned into objects by
# train/build.py alone, so that what a run records is what it ran. Torch-free, like this module.
@dataclass(frozen=True)
class OptimizerSpec:
    name: str  # adamw | muon (Muon for the blocks' matrices, AdamW at `lr` for the rest; train/muon.py)
    lr: float  # peak learning rate (the schedule scales every group's)
    weight_decay: float  # decoupled, on matrices only (train/optim.py)
    betas: tuple[float, float]  # AdamW's
    muon_lr: float = DEFAULTS["muon_lr"]  # Muon's peak learning rate
    muon_dtype: str = DEFAULTS["muon_dtype"]  # Newton-Schulz's dtype


@dataclass(frozen=True)
class ScheduleSpec:
    name: str  # cosine | wsd | linear | constant (train/optim.py's schedule())
    lr: float
    warmup: int  # steps
    total: int  # steps: the schedule's horizon (the run's max_steps)
    min_lr: float = 0.0
    decay_fraction: float = DEFAULTS["decay_fraction"]  # wsd only
    decay_shape: str = DEFAULTS["decay_shape"]  # wsd only


@dataclass(frozen=True)
class LoopOptions:
    """The loop's part of a run's (frozen, fully resolved) options (train/loop.py's Trainer)."""

    max_steps: int
    clip: float = 1.0  # max gradient norm; 0: no clipping
    eval_every: int = 0  # steps between evaluations (0: only at the end)
    save_every: int = 0  # steps between checkpoints (one is always written at the end)
    max_bad_steps: int = 5
    oom_backoff: bool = False


@dataclass(frozen=True)
class ParallelSpec:
    precision: str  # PRECISIONS
    strategy: str = "ddp"  # under torchrun: ddp | fsdp
    compile: bool = False
    activation_checkpointing: bool = False


@dataclass(frozen=True)
class RunSpec:
    """Everything a Trainer is built from (train/build.py), besides its task, model and outputs."""

    optimizer: OptimizerSpec
    schedule: ScheduleSpec
    loop: LoopOptions
    parallel: ParallelSpec
    batch_size: int  # per rank, per micro-batch
    grad_accum: int
    progress: str = "none"  # PROGRESS (rank 0's; the others show none)
    flops_per_token: float | None = None  # for the MFU estimate (train/flops.py); None: no MFU
    peak_flops: float | None = None  # per device; None: a known GPU's


@dataclass(frozen=True)
class PretrainOptions:
    out: str  # run directory: metrics.jsonl, checkpoints/, final/
    preset: str | None = None  # a preset name (plmlab info --list)
    objective: str | None = None  # clm
    objective_options: dict[str, Any] | None = None  # the objective's constructor options (mask_prob=0.3, ...)
    corpus: list[str] | None = None  # files / folders; empty: the built-in corpus
    encoding_errors: str | None = None  # strict | replace
    config_file: str | None = None  # JSON / YAML object of Config fields (over the preset)
    overrides: dict[str, Any] | None = None  # Config fields, over preset and file
    tokenizer: str | None = None  # tokenizer directory; None: train one on the corpus
    vocab_size: int | None = None  # the model's (and the trained tokenizer's) vocabulary
    seq_len: int | None = None
    batch_size: int | None = None  # sequences per micro-batch
    grad_accum: int | None = None  # micro-batches per optimizer step
    max_steps: int | None = None
    lr: float | None = None
    min_lr: float | None = None
    warmup: int | None = None
    weight_decay: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    clip: float | None = None  # max gradient norm; 0: no clipping
    optimizer: str | None = None  # adamw | muon (Muon for the blocks' matrices, AdamW at --lr for the rest)
    muon_lr: float | None = None  # Muon's peak learning rate (the schedule scales it like --lr)
    muon_dtype: str | None = None  # auto | bf16 | fp32: Muon's Newton-Schulz iteration (train/muon.py)
    schedule: str | None = None  # cosine | wsd (warmup-stable-decay) | linear | constant (after the warmup)
    decay_fraction: float | None = None  # wsd: the last fraction of the steps that decays to min_lr
    decay_shape: str | None = None  # wsd: linear | 1-sqrt
    seed: int | None = None
    save_every: int | None = None  # steps between checkpoints (one is always written at the end)
    eval_every: int | None = None
    eval_batches: int | None = None  # validation batches per evaluation (fixed across the run)
    keep_last: int | None = None  # checkpoints kept; 0: all
    max_bad_steps: int | None = None  # non-finite steps in a row before the run stops
    precision: str | None = None  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16-mixed (= bf16) | fp16-mixed
    device: str | None = None  # auto | cpu | cuda | cuda:N
    threads: int | None = None  # CPU threads for torch; None: setup.default_threads()
    progress: str | None = None  # auto (bar on a TTY, plain lines otherwise) | bar | plain | none
    sample_tokens: int | None = None  # tokens to generate from `prompt` at the end; 0: none
    prompt: str | None = None
    tensorboard: bool | None = None  # also write the metrics as TensorBoard scalars in out/tensorboard
    suite: str | None = None  # "builtin": the final model's score card on the built-in suite (CORE)
    strategy: str | None = None  # ddp | fsdp (FSDP2 fully_shard); used under torchrun (WORLD_SIZE > 1)
    compile: bool | None = None  # torch.compile the model
    activation_checkpointing: bool | None = None  # recompute block activations in backward
    global_batch_tokens: int | None = None  # tokens per optimizer step over all ranks: sets grad_accum
    oom_backoff: bool | None = None  # on CUDA OOM: halve the micro-batch, double grad_accum, retry
    peak_flops: float | None = None  # peak FLOP/s per device for the MFU estimate (default: known GPUs)
    init_from: str | None = None  # start from this run's / checkpoint's weights, config and tokenizer (fresh optimizer)
    resume: bool = False  # continue from the newest complete checkpoint in `out` (wins when `out` holds a run)
    overwrite: bool = False  # start over in an `out` that already holds a run

    def given(self) -> dict[str, Any]:
        """The fields set explicitly (not None), without out/resume/overwrite."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name in DEFAULTS and getattr(self, f.name) is not None}

    def resolved(self, stored: dict[str, Any] | None = None) -> "PretrainOptions":
        """Every field filled: from the stored run (resume) or DEFAULTS, then checked."""
        base = dict(DEFAULTS if stored is None else {**DEFAULTS, **LEGACY, **stored})
        given = self.given()
        if given.get("init_from") is not None:
            # an absolute path: the run records where it started, and a resume compares it by place
            given["init_from"] = os.path.abspath(_checked_path(given["init_from"]))
        if stored is not None:
            _check_resume_agrees(given, stored)
        values = {**base, **given, "out": self.out, "resume": self.resume, "overwrite": self.overwrite}
        check_option_types(values)
        values["corpus"] = list(values["corpus"] or [])
        values["overrides"] = dict(values["overrides"] or {})
        values["objective_options"] = dict(values["objective_options"] or {})
        if values["min_lr"] is None:
            values["min_lr"] = values["lr"] / 10
        if values["warmup"] is None:
            values["warmup"] = min(100, values["max_steps"] // 10)
        options = PretrainOptions(**values)
        options.check()
        _check_given_fits(given, options)
        return options

    def check(self) -> None:
        check_option_types(dataclasses.asdict(self))
        positive = ("batch_size", "grad_accum", "max_steps", "eval_batches", "max_bad_steps")
        for name in positive:
            if getattr(self, name) <= 0:
                raise PlmlabError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("save_every", "eval_every", "keep_last", "warmup", "sample_tokens"):
            if getattr(self, name) < 0:
                raise PlmlabError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(self, name)}")
        for name in ("lr", "min_lr", "weight_decay", "clip", "muon_lr"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise PlmlabError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
        if self.lr <= 0:
            raise PlmlabError(f"--lr must be positive, got {self.lr}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise PlmlabError("AdamW betas must be in [0, 1)")
        self._check_optimizer()
        if self.seq_len is not None and self.seq_len < 2:
            raise PlmlabError(f"--seq-len must be at least 2, got {self.seq_len}")
        for name, choices in (("encoding_errors", ("strict", "replace")), ("precision", PRECISIONS),
                              ("strategy", STRATEGIES), ("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
                              ("decay_shape", DECAY_SHAPES), ("muon_dtype", MUON_DTYPES),
                              ("progress", PROGRESS), ("suite", (None, "builtin"))):
            if getattr(self, name) not in choices:
                raise PlmlabError(f"--{name.replace('_', '-')} must be one of {', '.join(choices)}, "
                                  f"not {getattr(self, name)!r}")
        if self.global_batch_tokens is not None and self.global_batch_tokens <= 0:
            raise PlmlabError(f"--global-batch-tokens must be positive, got {self.global_batch_tokens}")
        if self.peak_flops is not None and not (math.isfinite(self.peak_flops) and self.peak_flops > 0):
            raise PlmlabError(f"--peak-flops must be a positive number, got {self.peak_flops}")
        if self.threads is not None and self.threads <= 0:
            raise PlmlabError(f"--threads must be positive, got {self.threads}")
        check_seed(self.seed)
        check_device(self.device)

    def _check_optimizer(self) -> None:
        if self.muon_lr <= 0:
            raise PlmlabError(f"--muon-lr must be positive, got {self.muon_lr}")
        if not 0 < self.decay_fraction <= 1:
            raise PlmlabError(f"--decay-fraction must be in (0, 1], got {self.decay_fraction}")
        if self.optimizer == "muon" and self.strategy == "fsdp":
            # Newton-Schulz orthogonalises a whole matrix; FSDP2 leaves each rank a shard of it.
            raise PlmlabError("--optimizer muon needs whole weight matrices, which --strategy fsdp shards; "
                              "use --strategy ddp or --optimizer adamw")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k in DEFAULTS}

    def run_spec(self, flops_per_token: float | None = None) -> RunSpec:
        """What train/build.py builds from these (resolved) options."""
        optimizer = OptimizerSpec(self.optimizer, self.lr, self.weight_decay, (self.beta1, self.beta2),
                                  self.muon_lr, self.muon_dtype)
        schedule = ScheduleSpec(self.schedule, self.lr, self.warmup, self.max_steps, self.min_lr,
                                self.decay_fraction, self.decay_shape)
        loop = LoopOptions(self.max_steps, self.clip, self.eval_every, self.save_every, self.max_bad_steps,
                           bool(self.oom_backoff))
        parallel = ParallelSpec(self.precision, self.strategy, self.compile, self.activation_checkpointing)
        return RunSpec(optimizer, schedule, loop, parallel, self.batch_size, self.grad_accum, self.progress,
                       flops_per_token, self.peak_flops)


SEED_LIMIT = 2**63  # torch.manual_seed takes a 64-bit integer; numpy's seeds must be >= 0
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_option_types(values: dict[str, Any]) -> None:
    """Each option of the kind its default has (an int where 16 is the default, a number where
    2e-3 is ...), so a Python caller gets the CLI's one line instead of a TypeError later."""
    for name, default in DEFAULTS.items():
        value = values.get(name)
        if default is None or value is None:
            continue
        kind = (int, float) if isinstance(default, float) else type(default)
        if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, kind):
            raise PlmlabError(f"--{name.replace('_', '-')} must be a {type(default).__name__}, got {value!r}")


def _checked_path(value) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise PlmlabError(f"--init-from must be a directory, got {value!r}")
    return str(value)


def check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise PlmlabError(f"--seed must be an integer in [0, 2**63), got {seed!r}")


def check_device(device) -> None:
    if device is not None and not (isinstance(device, str) and _DEVICE.match(device)):
        raise PlmlabError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


def _check_resume_agrees(given: dict[str, Any], stored: dict[str, Any]) -> None:
    differ = [k for k, v in given.items() if k not in CHANGEABLE and stored.get(k) != v]
    if differ:
        shown = ", ".join(f"--{k.replace('_', '-')} {given[k]} (the run has {stored.get(k)})" for k in differ)
        raise PlmlabError(f"a resumed run keeps its settings, but {shown}; "
                          "start a new run (another --out) to change them")


def _check_given_fits(given: dict[str, Any], o: PretrainOptions) -> None:
    """An option that the run's optimizer or schedule would ignore is a mistake: say so."""
    for name in ("muon_lr", "muon_dtype"):
        if name in given and o.optimizer != "muon":
            raise PlmlabError(f"--{name.replace('_', '-')} is for --optimizer muon, and this run uses {o.optimizer}")
    for name in ("decay_fraction", "decay_shape"):
        if name in given and o.schedule != "wsd":
            raise PlmlabError(f"--{name.replace('_', '-')} is for --schedule wsd, and this run uses {o.schedule}")
