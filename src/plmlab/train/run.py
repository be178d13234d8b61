"""`pretrain(options)`: a whole run, from corpus to final checkpoint (the `plmlab pretrain` verb).

    corpus -> tokenizer (given, or trained with the preset's style) -> token shards (cached)
      -> objective -> model -> Trainer.fit (checkpoints, metrics.jsonl) -> DIR/final/
      -> validation loss next to unigram / bigram baselines, and a generated sample

Layout of a run directory:

    DIR/metrics.jsonl   DIR/summary.json   DIR/final/   DIR/checkpoints/step-XXXXXXXX/
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..data import build_token_data, builtin_documents, corpus_fingerprint, read_corpus
from ..errors import PlmlabError
from ..modeling import build_model
from . import faults
from .baselines import ngram_baselines, stream_with_eos
from .checkpoint import commit_dir, latest_complete, write_checkpoint, write_json_durable
from .data import count_targets, fixed_batches
from .loop import Trainer, TrainState
from .scale import Dist, Precision, full_model_state, full_optimizer_state, grad_accum_for, make_scale, param_names, rescale_for_world
from .demo import demonstrate
from .objective_setup import build_objective, check_objective_options
from .metrics import METRICS, MetricsLog, Progress, read_metrics
from .optim import make_optimizer
from .options import MAX_DEFAULT_SEQ_LEN, PretrainOptions
from .setup import RunLock, build_config, choose_device, make_tokenizer
from .state import STATE_JSON, STATE_TENSORS, read_trainer_info, read_trainer_tensors, set_rng_state, write_trainer_state

RUN_ENTRIES = (METRICS, "checkpoints", "final", "summary.json", "tensorboard")
STATE_FORMAT = 1


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
    accuracies: dict = field(default_factory=dict)  # val_mlm_accuracy, val_token_accuracy, ... at the end
    demo: dict | None = None  # fill-mask / span filling / fill-blanks on a validation sentence (train/demo.py)

    def to_dict(self) -> dict:
        return asdict(self)


def pretrain(options: PretrainOptions) -> PretrainResult:
    """Run (or resume) a pretraining run; see the module docstring and PretrainOptions."""
    started = time.perf_counter()
    out = Path(options.out)
    dist = Dist.from_env(options.device)  # torchrun: RANK / WORLD_SIZE / LOCAL_RANK (train/scale.py)
    try:
        with RunLock(out) if dist.is_main else contextlib.nullcontext():  # rank 0 owns the run directory
            run = dist.main_first(lambda: _Run(options, out, dist)).parallelize()
            result = run.train()
        result.wall_s = round(time.perf_counter() - started, 2)
        if result.interrupted is None and dist.is_main:
            write_json_durable(out / "summary.json", result.to_dict())
        # Leave together: a rank that tears its gloo connections down while rank 0 is still
        # saving and sampling can abort ("terminate called without an active exception").
        dist.barrier()
    finally:
        dist.close()
    return result


class _Run:
    """The pieces of one run, assembled for a fresh start or from a checkpoint."""

    REQUIRED = (STATE_JSON, STATE_TENSORS, "config.json")

    def __init__(self, options: PretrainOptions, out: Path, dist: Dist | None = None) -> None:
        self.out, self.ckpt_dir = out, out / "checkpoints"
        self.dist = dist or Dist()
        found = self._find_checkpoint() if options.resume else None
        self.info = read_trainer_info(found[1]) if found else None
        # A run resumes on any number of ranks: the same global micro-batch (batch_size x world).
        stored = rescale_for_world(self.info["options"], self.info.get("world_size", 1),
                                   self.dist.world) if self.info else None
        self.options = options.resolved(stored)
        o = self.options
        check_objective_options(o.objective, o.objective_options)  # before any tokenizer training
        self.old_entries = [] if found else self._old_entries()
        if o.threads is not None:
            torch.set_num_threads(o.threads)
        self.device = self.dist.device(choose_device(o.device))
        Precision(o.precision, self.device)  # fp16-mixed on CPU: refused before any work
        documents = read_corpus(o.corpus, errors=o.encoding_errors) if o.corpus else builtin_documents()
        self.fingerprint = corpus_fingerprint(documents)
        if found:
            self._restore_setup(found[1])
        else:
            _seed_everything(o.seed)
            config = build_config(o)
            self.tokenizer = make_tokenizer(o, config, documents)
            self.config = _with_special_ids(config, self.tokenizer)
            o.seq_len = _seq_len(o.seq_len, self.config, self.device)
            if o.global_batch_tokens is not None:
                accum = grad_accum_for(o.global_batch_tokens, o.batch_size, o.seq_len, self.dist.world)
                if options.grad_accum is not None and options.grad_accum != accum:
                    raise PlmlabError(f"--grad-accum {options.grad_accum} disagrees with --global-batch-tokens "
                                      f"{o.global_batch_tokens} (which needs {accum}); pass one of them")
                o.grad_accum = accum
        self.train_data, self.val_data = build_token_data(documents, self.tokenizer)
        self.objective = build_objective(o.objective, self.tokenizer, o.seq_len, o.objective_options)
        if o.objective == "clm" and self.tokenizer.eos_id is None:
            raise PlmlabError("the tokenizer has no end-of-text token, which the causal objective puts between documents")
        n_train = self.objective.num_examples(self.train_data)
        if n_train == 0:
            raise PlmlabError(f"the training split has {self.train_data.n_tokens} tokens: too few for one "
                              f"sequence of {o.seq_len} (add text or lower --seq-len)")
        # every rank evaluates the same global batches: the same val_loss for any world size
        self.val_batches = fixed_batches(self.objective, self.val_data, o.seed, o.batch_size * self.dist.world,
                                         o.eval_batches)
        self.model = build_model(self.config, device=self.device)
        self.state = TrainState()
        self.resumed_from = found[0] if found else None
        self.scale = make_scale(o, self.dist, self.device, self.config, self.model.num_parameters())
        self.found = found
        if found:
            self._restore_weights(found[1])

    def parallelize(self) -> "_Run":
        """DDP / FSDP2 / compile / activation checkpointing, then the optimizer (after sharding) and
        the rest of a resumed state. Collectives: every rank calls it, after set-up."""
        o = self.options
        self.train_model = self.scale.prepare(self.model)
        self.scale.model_for_sync = self.model
        self.optimizer = make_optimizer(self.model, o.lr, o.weight_decay, (o.beta1, o.beta2))
        if self.found:
            self._restore_training(self.found[1])
        return self

    # ------------------------------------------------------------------ fresh or resumed
    def _find_checkpoint(self):
        found = latest_complete(self.ckpt_dir, self.REQUIRED,
                                on_skip=lambda why: _warn(f"skipping checkpoint {why}"))
        if found is None and any(self.ckpt_dir.glob("step-*")):
            raise PlmlabError(f"no complete checkpoint under {self.ckpt_dir} to resume from (see above); "
                              "pass --overwrite instead of --resume to start over")
        if found is None:
            _warn(f"no checkpoint in {self.out}: starting a new run")
        return found

    def _old_entries(self) -> list[Path]:
        """What an earlier run left in `out`: refused unless --overwrite (or --resume found no
        checkpoint), and deleted only once the new run is set up and about to write."""
        existing = [self.out / name for name in RUN_ENTRIES if (self.out / name).exists()]
        if existing and not (self.options.overwrite or self.options.resume):
            raise PlmlabError(f"{self.out} already holds a run ({', '.join(p.name for p in existing)}); "
                              "pass --resume to continue it or --overwrite to start over")
        return existing

    def _restore_setup(self, folder: Path) -> None:
        from ..tokenizers import load_tokenizer

        if self.info.get("format") != STATE_FORMAT:
            raise PlmlabError(f"{folder}: trainer state format {self.info.get('format')} is not supported")
        if self.info["corpus_fingerprint"] != self.fingerprint:
            raise PlmlabError(f"the corpus differs from the one this run was trained on "
                              f"({', '.join(self.options.corpus) or 'the built-in corpus'}); resume needs the same text")
        self.tokenizer = load_tokenizer(folder)
        self.config = Config.from_dict(self.info["config"])

    def _restore_weights(self, folder: Path) -> None:
        from .. import load_pretrained

        self.model.load_state_dict(load_pretrained(folder).state_dict())

    def _restore_training(self, folder: Path) -> None:
        optimizer_state, rng = read_trainer_tensors(folder, self.info)
        self.scale.load_optimizer(self.model, self.optimizer, optimizer_state)
        self.scale.load_scaler_state(self.info.get("grad_scaler"))
        self.state = TrainState(**self.info["state"])
        set_rng_state(rng)  # last: building the model above drew from torch's generator
        _warn(f"resuming {self.out} from {folder.name}")

    # ------------------------------------------------------------------ training
    def save_checkpoint(self) -> Path | None:
        """Rank 0 writes the full (unsharded) state; under FSDP every rank helps gather it first."""
        model, optimizer = self.model, self.optimizer
        if self.scale.fsdp:
            model = self._full_model()
            optimizer = _StateOnly(full_optimizer_state(self.model, self.optimizer, param_names(self.model)))

        def write(folder: Path) -> None:
            from .. import save_pretrained

            save_pretrained(model, folder, tokenizer=self.tokenizer)
            faults.during_save(self.state.step)
            info = {"format": STATE_FORMAT, "state": self.state.to_dict(), "options": self.options.to_dict(),
                    "config": self.config.to_dict(), "corpus_fingerprint": self.fingerprint,
                    "world_size": self.dist.world, "grad_scaler": self.scale.scaler_state()}
            write_trainer_state(folder, info, optimizer)

        return self.dist.on_main(lambda: write_checkpoint(self.ckpt_dir, self.state.step, write, self.options.keep_last),
                                 "saving a checkpoint")

    def _full_model(self):
        """FSDP: the gathered weights in a plain CPU model on rank 0 (a collective; None elsewhere)."""
        weights = full_model_state(self.model, True)
        if not self.dist.is_main:
            return None
        model = build_model(self.config, device=torch.device("cpu"))
        model.load_state_dict(weights)
        return model

    def train(self) -> PretrainResult:
        o = self.options
        main = self.dist.is_main  # only rank 0 logs and writes
        tensorboard = self._tensorboard() if main else None
        for path in self.old_entries if main else []:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        log = MetricsLog(self.out / METRICS, keep_until=self.state.step if self.resumed_from is not None else None,
                         mirror=tensorboard) if main else _NoLog()
        progress = Progress(o.progress if main else "none", self.state.step, o.max_steps)
        if not self.val_batches:
            progress.write("plmlab: warning: the validation split is too small for one sequence; no evaluation")
        trainer = Trainer(self.train_model, self.optimizer, self.objective, self.train_data, self.val_batches, o,
                          self.state, self.save_checkpoint, log, progress, self.device, scale=self.scale)
        try:
            signum = trainer.fit()
        finally:
            progress.close()
            log.close()
        result = PretrainResult(out=str(self.out), step=self.state.step, interrupted=signum,
                                tokens=self.state.tokens, params=self.model.num_parameters(),
                                resumed_from=self.resumed_from,
                                tokens_per_s=round(self.state.tokens / max(self.state.elapsed_s, 1e-9), 1))
        result.checkpoint = str(self.ckpt_dir / f"step-{trainer.saved_step:08d}")
        if signum is not None:
            return result
        if self.dist.enabled:
            self._finish_distributed(trainer, result)
        else:
            self._finish(trainer, result)
        return result

    def _finish_distributed(self, trainer: Trainer, result: PretrainResult) -> None:
        """Every rank evaluates (collectives under FSDP); rank 0 alone writes final/ and samples,
        from a plain copy of the gathered weights under FSDP."""
        if self.val_batches and (trainer.last_eval is None or trainer.last_eval[0] != self.state.step):
            trainer.evaluate()
        if self.scale.fsdp:
            full = self._full_model()
            if full is not None:
                self.model, self.device = full, torch.device("cpu")
        self.dist.on_main(lambda: self._finish(trainer, result), "finishing the run")

    def _tensorboard(self):
        if not self.options.tensorboard:
            return None
        from .tensorboard import TensorBoardLogger

        tb = TensorBoardLogger(self.out / "tensorboard")
        if not tb.available:
            raise PlmlabError(tb.reason)
        return tb

    def _finish(self, trainer: Trainer, result: PretrainResult) -> None:
        """Final evaluation, baselines, final/ and a sample."""
        o = self.options
        if self.val_batches:
            if trainer.last_eval is None or trainer.last_eval[0] != self.state.step:
                trainer.evaluate()
            result.val_loss = trainer.last_eval[1]
            result.val_ppl = math.exp(min(result.val_loss, 700.0))
            result.val_tokens = sum(count_targets(b) for b in self.val_batches)
            if o.objective == "clm":
                result.baselines = self._baselines()
        losses = [r["loss"] for r in read_metrics(self.out / METRICS) if isinstance(r["loss"], float)]
        result.train_loss = losses[-1] if losses else None
        result.final_dir = str(self._save_final())
        if o.sample_tokens and self.config.arch == "decoder" and self.tokenizer.eos_id is not None:
            result.sample = self._sample()  # a continuation of the prompt: decoders only
        result.accuracies = dict(trainer.last_accuracies)
        result.demo = demonstrate(self.model, self.tokenizer, o.objective, self.val_data, self.device, o.seed)

    def _baselines(self) -> dict:
        stream = stream_with_eos(self.train_data.tokens, self.train_data.doc_offsets, self.tokenizer.eos_id)
        inputs = torch.cat([b["input_ids"].flatten() for b in self.val_batches]).numpy()
        labels = torch.cat([b["labels"].flatten() for b in self.val_batches]).numpy()
        keep = labels != -100
        vocab = max(self.tokenizer.vocab_size, int(stream.max()) + 1)
        return ngram_baselines(stream, inputs[keep], labels[keep], vocab)

    def _save_final(self) -> Path:
        from .. import save_pretrained

        final = self.out / "final"
        tmp = self.out / f".tmp-final-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        save_pretrained(self.model, tmp, tokenizer=self.tokenizer)
        commit_dir(tmp, final)
        return final

    def _sample(self) -> str:
        from .. import generate

        o = self.options
        prompt = [self.tokenizer.eos_id] + self.tokenizer.encode(o.prompt, add_special_tokens=False)
        room = self.config.max_positions - len(prompt)
        if room <= 0:
            return ""
        self.model.eval()
        ids = generate(self.model, torch.tensor([prompt], device=self.device), max_new_tokens=min(o.sample_tokens, room),
                       do_sample=True, temperature=0.8, top_k=40, seed=o.seed)
        return o.prompt + self.tokenizer.decode(ids[0].tolist())


class _NoLog:
    """The metrics log of ranks other than 0."""

    def write(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


class _StateOnly:
    """What write_trainer_state needs of an optimizer: a state_dict (the gathered FSDP one)."""

    def __init__(self, state: dict | None) -> None:
        self.state = state

    def state_dict(self) -> dict | None:
        return self.state


def _with_special_ids(config: Config, tokenizer) -> Config:
    return config.replace(bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id)


def _seq_len(requested: int | None, config: Config, device: torch.device) -> int:
    if requested is None:
        return min(config.max_positions, MAX_DEFAULT_SEQ_LEN.get(device.type, 1024))
    if requested > config.max_positions:
        raise PlmlabError(f"--seq-len {requested} is longer than the model's context "
                          f"(max_positions {config.max_positions})")
    return requested


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _warn(message: str) -> None:
    print(f"plmlab: {message}", file=sys.stderr, flush=True)
