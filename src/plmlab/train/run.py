"""`pretrain(options)`: a whole run, from corpus to final checkpoint (the `plmlab pretrain` verb).

    corpus -> tokenizer (given, or trained with the preset's style) -> token shards (cached)
      -> objective -> model -> parallelize -> Trainer.fit (checkpoints, metrics.jsonl) -> DIR/final/
      -> validation loss next to unigram / bigram baselines, and a generated sample

Each stage is its own module: pretrain_setup (fresh or resumed set-up), build (the Trainer
assembled: precision, DDP / FSDP2, optimizer, schedule, restore, outputs), loop (the Trainer),
saving (checkpoints, final/), finish (evaluation, baselines, sample), rundir (lock, refusals).
Layout of a run directory:

    DIR/metrics.jsonl   DIR/summary.json   DIR/final/   DIR/checkpoints/step-XXXXXXXX/
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field

import torch

from ..modeling import build_model
from .build import Saving, build_trainer
from .checkpoint import write_json_durable
from .finish import ensure_final_eval, finish
from .flops import model_flops_per_token
from .loop import TrainState
from .options import PretrainOptions
from .parallel import Dist
from .pretrain_setup import PretrainSetup, prepare
from .setup import machine_info
from .rundir import RunDir, RunLock


@dataclass
class PretrainResult:
    out: str
    step: int  # the last step trained
    interrupted: int | None = None  # the signal that stopped the run early, if any
    final_dir: str | None = None
    checkpoint: str | None = None  # the newest checkpoint
    train_loss: float | None = None
    val_loss: float | None = None
    val_ppl: float | None = None
    val_tokens: int = 0
    baselines: dict = field(default_factory=dict)  # unigram / bigram: loss, ppl, k
    tokens: int = 0
    tokens_per_s: float = 0.0  # training throughput over the whole run
    wall_s: float = 0.0  # this session, set-up and evaluation included
    params: int = 0
    sample: str | None = None
    resumed_from: int | None = None
    init_from: dict | None = None  # --init-from's source: path, folder, manifest_sha256
    accuracies: dict = field(default_factory=dict)  # val_mlm_accuracy, val_token_accuracy, ... at the end
    muon_dtype: str | None = None  # the dtype Muon's Newton-Schulz ran in (bf16 | fp32), when Muon ran
    score_card: dict | None = None  # --suite builtin: the built-in suite's metrics (tasks, core, items_per_s)
    demo: dict | None = None  # fill-mask / span filling / fill-blanks on a validation sentence (train/demo.py)
    options: dict = field(default_factory=dict)  # the resolved options the run trained with
    machine: dict = field(default_factory=dict)  # versions, CPU capability, threads, device (setup.machine_info)

    def to_dict(self) -> dict:
        return asdict(self)


def pretrain(options: PretrainOptions) -> PretrainResult:
    """Run (or resume) a pretraining run; see the module docstring and PretrainOptions."""
    started = time.perf_counter()
    rundir = RunDir(options.out)
    dist = Dist.from_env(options.device)  # torchrun: RANK / WORLD_SIZE / LOCAL_RANK (train/parallel.py)
    try:
        with RunLock(rundir.out) if dist.is_main else contextlib.nullcontext():  # rank 0 owns the run directory
            setup = dist.main_first(lambda: prepare(options, rundir, dist))
            result = _train(setup, rundir, dist)
        result.wall_s = round(time.perf_counter() - started, 2)
        if result.interrupted is None and dist.is_main:
            write_json_durable(rundir.out / "summary.json", result.to_dict())
        # Leave together: a rank that tears its gloo connections down while rank 0 is still
        # saving and sampling can abort ("terminate called without an active exception").
        dist.barrier()
    finally:
        dist.close()
    return result


def _train(setup: PretrainSetup, rundir: RunDir, dist: Dist) -> PretrainResult:
    o, device = setup.options, setup.device
    run = o.run_spec(model_flops_per_token(setup.config, setup.model.num_parameters(), o.seq_len))
    saving = Saving(rundir, setup.tokenizer, info=lambda state: _run_info(setup, state),
                    rebuild=lambda: build_model(setup.config, device=torch.device("cpu")), keep_last=o.keep_last,
                    resume=(setup.found[1], setup.info) if setup.found else None, old_entries=setup.old_entries,
                    tensorboard=o.tensorboard)
    trainer = build_trainer(setup.task, setup.model, run, device, dist, saving)
    # The step hook (staged masking): the loop makes step k's batches while state.step is k - 1.
    setup.objective.follow_steps(lambda: trainer.state.step + 1, o.max_steps)
    if not setup.task.val_batches:
        trainer.progress.write("plmlab: warning: the validation split is too small for one sequence; no evaluation")
    signum = trainer.fit()
    return _result(setup, trainer, rundir, dist, signum)


def _result(setup, trainer, rundir, dist, signum) -> PretrainResult:
    state, parallel, save = trainer.state, trainer.parallel, trainer.save_checkpoint
    result = PretrainResult(out=str(rundir.out), step=state.step, interrupted=signum, tokens=state.tokens,
                            params=setup.model.num_parameters(), resumed_from=setup.found[0] if setup.found else None,
                            muon_dtype=getattr(trainer.optimizer, "ns_dtype", None),
                            init_from=setup.init_from,
                            tokens_per_s=round(state.tokens / max(state.elapsed_s, 1e-9), 1),
                            options=_run_info(setup, state)["options"], machine=machine_info(setup.device))
    result.checkpoint = str(rundir.checkpoints / f"step-{trainer.saved_step:08d}")
    if signum is not None:
        return result
    model, device = setup.model, setup.device
    if dist.enabled:
        # Every rank evaluates (collectives under FSDP); rank 0 alone writes final/ and samples,
        # from a plain copy of the gathered weights under FSDP.
        if setup.task.val_batches:
            ensure_final_eval(trainer)
        if parallel.fsdp:
            model, device = save.gathered_model(), torch.device("cpu")
    dist.on_main(lambda: finish(result, trainer, setup, model, device, rundir.out), "finishing the run")
    return result


def _run_info(setup: PretrainSetup, state: TrainState) -> dict:
    """What a pretraining checkpoint records beyond the loop's state: the run's options (with the
    micro-batch geometry it has now), the model config and the corpus fingerprint."""
    options = {**setup.options.to_dict(), "batch_size": state.batch_size, "grad_accum": state.grad_accum}
    info = {"options": options, "config": setup.config.to_dict(), "corpus_fingerprint": setup.fingerprint}
    if setup.init_from is not None:
        info["init_from"] = setup.init_from  # where the run started: path, folder, manifest hash
    return info
