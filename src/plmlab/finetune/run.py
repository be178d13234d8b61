"""`finetune(options)`: fine-tune a pretrained model on a task, through the one Trainer.

    model dir -> task.model_config (a head, a label set) -> the pretrained weights copied over
      -> encoded examples -> the task (finetune/tasks.py) -> Trainer.fit (checkpoints, metrics.jsonl, eval per epoch)
      -> DIR/final (Hugging Face layout + tokenizer), DIR/summary.json (the per-epoch history)

The run directory has pretraining's guarantees (train/rundir.py): a lock, no writing into an
earlier run (a fine-tune or a pretraining run) without --overwrite, crash-safe checkpoints
and final/, and --resume that continues bit-identically after a kill -- of the same data: every
checkpoint records the task's fingerprint of its training examples, and a resume with other
data is refused.
"""

from __future__ import annotations

import contextlib
import math
import signal
from dataclasses import dataclass

import torch

from ..errors import PlmlabError
from ..hf import load_pretrained
from ..modeling import build_model, copy_matching
from ..nn.lora import merge_into_base
from ..pipelines import load_model_and_tokenizer
from ..train.build import Saving, build_trainer
from ..train.checkpoint import write_json_durable
from ..train.lora import apply_lora, describe_lora, load_lora_checkpoint, save_adapter_dir
from ..train.metrics import METRICS, read_metrics
from ..train.parallel import Dist
from ..train.precision import Precision
from ..train.rundir import RunDir, RunLock
from ..train.saving import STATE_FORMAT, save_final
from ..train.setup import choose_device
from ..train.state import read_trainer_info
from ..train.task import Task
from .options import DEFAULT_BASE_LR, FinetuneOptions, with_defaults
from .tasks import get_task


class Interrupted(PlmlabError):
    """A signal stopped the fine-tune; its checkpoint is saved (the CLI exits 128 + signum)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


@dataclass
class _Setup:
    task: Task  # train/task.py's protocol: a registered task, SFT's, DPO's, distillation's
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    steps_per_epoch: int
    train_also: tuple[str, ...] = ()  # under LoRA: the new head's parameters, trained too


def finetune(options: FinetuneOptions, log=print, prepare=None, finish=None) -> list[dict]:
    """Fine-tune, evaluate each epoch, save OUT/final; returns the per-epoch metrics.
    `prepare(options, dist) -> _Setup` builds the model and the task (default: a registered
    task's; DPO and SFT pass their own, finetune/dpo.py and sft.py); `finish(setup, rundir, log)`,
    if given, runs on rank 0 after the summary, while the run directory is still locked."""
    prepare = prepare or _prepare
    rundir, dist = RunDir(options.out), Dist.from_env(options.device)
    try:
        with RunLock(rundir.out) if dist.is_main else contextlib.nullcontext():
            # the run directory is looked at once the data checked out, and before anything is written
            setup, options, how, (found, old) = dist.main_first(lambda: _prepared(options, dist, rundir, prepare))
            if dist.is_main:
                for line in ([describe_lora(setup.model)] if options.lora is not None else []) + how:
                    log(line)
            _train(options, setup, rundir, dist, found, old)
            history = dist.on_main(lambda: _summarise(rundir, log), "writing the summary") or []
            if finish is not None:
                dist.on_main(lambda: finish(setup, rundir, log), "finishing the run")
        dist.barrier()  # leave together (see train/run.py)
    finally:
        dist.close()
    return history


def _prepared(options: FinetuneOptions, dist: Dist, rundir: RunDir, prepare):
    """(the set-up, the options with their learning rate and epochs resolved -- what the run
    records and a resume compares --, a line for each derived one, what `_discover` finds)."""
    setup = prepare(options, dist)
    task_lr = getattr(setup.task, "base_lr", DEFAULT_BASE_LR)  # a registered task's own (Task.base_lr)
    options, how = with_defaults(options, setup.model.config.d_model, setup.steps_per_epoch, task_lr)
    return setup, options, how, _discover(options, rundir, setup.task.fingerprint())


def _summarise(rundir: RunDir, log) -> list[dict]:
    """The per-epoch history from metrics.jsonl, into summary.json and the log (rank 0)."""
    history = epoch_history(read_metrics(rundir.out / METRICS))
    write_json_durable(rundir.out / "summary.json", {"history": history, "final_dir": str(rundir.out / "final")})
    for record in history:
        log(f"epoch {record['epoch']}: " + ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch"))
    log(f"saved {rundir.out / 'final'}")
    return history


def _prepare(o: FinetuneOptions, dist: Dist) -> _Setup:
    task = get_task(o.task)({**vars(o), **o.extra})
    if o.threads is not None:
        torch.set_num_threads(o.threads)
    device = dist.device(choose_device(o.device or "auto"))
    Precision(o.precision, device)  # fp16-mixed on CPU: refused before any work
    base, tokenizer = load_model_and_tokenizer(o.model, o.tokenizer)
    train = task.read(o.train)
    evaluation = task.read(o.eval) if o.eval else None
    config = task.model_config(base.config, train)
    torch.manual_seed(o.seed)  # the new head's initialisation
    model = build_model(config)
    new = copy_matching(base, model)  # pretrained weights wherever names and shapes agree; the new head keeps its init
    train_also = new if o.lora is not None else ()
    if o.lora is not None:  # the adapters and the new head train; the pretrained weights stay frozen
        apply_lora(model, o.lora, train_also=train_also)
    model.to(device)
    del base
    examples = [task.encode(r, tokenizer, config) for r in train]
    task.use(examples, [task.encode(r, tokenizer, config) for r in evaluation or []], tokenizer.pad_id or 0,
             o.batch_size, o.seed)
    return _Setup(task, model, tokenizer, device, task.steps_per_epoch(dist.world, o.grad_accum), train_also)


def _discover(o: FinetuneOptions, rundir: RunDir, fingerprint: str):
    """(the checkpoint to resume from and its state, the earlier run's entries to clear); a
    checkpoint of other options or other training data (`fingerprint`: the task's) is refused."""
    if not o.resume:
        return None, rundir.refuse_existing(o.overwrite, "a run (a fine-tune or a pretraining run)")
    found = rundir.find_checkpoint()
    if found is None:
        return None, []
    info = read_trainer_info(found[1])
    if info.get("format") != STATE_FORMAT or info.get("kind") != "finetune" or not isinstance(info.get("options"), dict):
        raise PlmlabError(f"{found[1]}: not a fine-tuning checkpoint (or its trainer state is corrupt)")
    o.check_resume_agrees(info["options"])
    if info.get("data_fingerprint", fingerprint) != fingerprint:  # checkpoints before it was recorded: not checked
        raise PlmlabError(f"the training data changed since the checkpoint {found[1]} (its fingerprint differs); "
                          "resume with the data it was trained on, or --overwrite to start over")
    return (found, info), []


def _train(o: FinetuneOptions, setup: _Setup, rundir: RunDir, dist: Dist, found, old) -> None:
    if found:  # the checkpoint's weights go in before FSDP2 shards them
        _load_weights(o, found[0][1], setup.model)
    saving = Saving(rundir, setup.tokenizer, info=lambda state: _run_info(o, setup),
                    rebuild=lambda: _rebuild(o, setup), keep_last=o.keep_last,
                    resume=(found[0][1], found[1]) if found else None, old_entries=old,
                    model_format="plmlab")  # checkpoints are for --resume; final/ is the HF layout
    trainer = build_trainer(setup.task, setup.model, o.run_spec(setup.steps_per_epoch), setup.device, dist,
                            saving)
    signum = trainer.fit()
    if signum is not None:
        raise Interrupted(signum, f"interrupted by {signal.Signals(signum).name} after step {trainer.state.step}; "
                                  f"saved a checkpoint in {rundir.checkpoints}; continue with --resume")
    model = trainer.save_checkpoint.gathered_model() if trainer.parallel.fsdp else setup.model
    dist.on_main(lambda: _save(o, model.cpu().eval(), rundir, setup.tokenizer), "saving the final model")


def _run_info(o: FinetuneOptions, setup: _Setup) -> dict:
    """What a fine-tuning checkpoint records beyond the loop's state: the options and the data's fingerprint."""
    return {"kind": "finetune", "options": o.to_dict(), "data_fingerprint": setup.task.fingerprint()}


def _save(o: FinetuneOptions, model: torch.nn.Module, rundir: RunDir, tokenizer) -> None:
    """final/ (Hugging Face layout); under LoRA first OUT/adapter (PEFT's format, with the tokenizer
    and the fine-tuned model's config, so that `plmlab merge-lora` onto the pretrained model needs
    nothing else), then final/ holds the adapters merged into the weights, so every pipeline loads
    it as before."""
    if o.lora is not None:
        save_adapter_dir(model, rundir.out, base_model=o.model, tokenizer=tokenizer)
        merge_into_base(model)
    save_final(model, rundir.out, tokenizer)


def _rebuild(o: FinetuneOptions, setup: _Setup) -> torch.nn.Module:
    """A fresh CPU model shaped like the trained one (FSDP gathers its weights into it)."""
    model = build_model(setup.model.config, device=torch.device("cpu"))
    if o.lora is not None:
        apply_lora(model, o.lora, train_also=setup.train_also)
    return model


def _load_weights(o, folder, model) -> None:
    if o.lora is not None:
        load_lora_checkpoint(model, folder)
    else:
        model.load_state_dict(load_pretrained(folder).state_dict())


def epoch_history(records: list[dict]) -> list[dict]:
    """metrics.jsonl's step records -> one record per epoch: the mean training loss of its
    steps and the evaluation at its end (resume-safe: metrics.jsonl reads as one run)."""
    epochs: dict[int, dict] = {}
    for r in records:
        e = max(1, math.ceil(r["epoch"] - 1e-9))
        entry = epochs.setdefault(e, {"losses": [], "eval": {}})
        if isinstance(r["loss"], float):
            entry["losses"].append(r["loss"])
        entry["eval"].update({k: v for k, v in r.items() if k.startswith("eval_")})
    return [{"epoch": e, "train_loss": sum(v["losses"]) / max(1, len(v["losses"])), **v["eval"]}
            for e, v in sorted(epochs.items())]
