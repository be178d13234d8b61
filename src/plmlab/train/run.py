"""`pretrain(options)`: a whole run, from corpus to final checkpoint (the `plmlab pretrain` verb).

    corpus -> tokenizer (given, or trained with the preset's style) -> token shards (cached)
      -> objective -> model -> Trainer.fit (checkpoints, metrics.jsonl) -> DIR/final/
      -> validation loss next to unigram / bigram baselines, and a generated sample

Layout of a run directory:

    DIR/metrics.jsonl   DIR/summary.json   DIR/final/   DIR/checkpoints/step-XXXXXXXX/
"""

from __future__ import annotations

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
from ..objectives import get_objective
from . import faults
from .baselines import ngram_baselines, stream_with_eos
from .checkpoint import commit_dir, latest_complete, write_checkpoint, write_json_durable
from .data import fixed_batches
from .loop import Trainer, TrainState
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

    def to_dict(self) -> dict:
        return asdict(self)


def pretrain(options: PretrainOptions) -> PretrainResult:
    """Run (or resume) a pretraining run; see the module docstring and PretrainOptions."""
    started = time.perf_counter()
    out = Path(options.out)
    with RunLock(out):
        run = _Run(options, out)
        result = run.train()
    result.wall_s = round(time.perf_counter() - started, 2)
    if result.interrupted is None:
        write_json_durable(out / "summary.json", result.to_dict())
    return result


class _Run:
    """The pieces of one run, assembled for a fresh start or from a checkpoint."""

    REQUIRED = (STATE_JSON, STATE_TENSORS, "config.json")

    def __init__(self, options: PretrainOptions, out: Path) -> None:
        self.out, self.ckpt_dir = out, out / "checkpoints"
        found = self._find_checkpoint() if options.resume else None
        self.info = read_trainer_info(found[1]) if found else None
        self.options = options.resolved(self.info["options"] if self.info else None)
        o = self.options
        self.old_entries = [] if found else self._old_entries()
        if o.threads is not None:
            torch.set_num_threads(o.threads)
        self.device = choose_device(o.device)
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
        self.train_data, self.val_data = build_token_data(documents, self.tokenizer)
        self.objective = get_objective(o.objective)(self.tokenizer, o.seq_len)
        if o.objective == "clm" and self.tokenizer.eos_id is None:
            raise PlmlabError("the tokenizer has no end-of-text token, which the causal objective puts between documents")
        n_train = self.objective.num_examples(self.train_data)
        if n_train == 0:
            raise PlmlabError(f"the training split has {self.train_data.n_tokens} tokens: too few for one "
                              f"sequence of {o.seq_len} (add text or lower --seq-len)")
        self.val_batches = fixed_batches(self.objective, self.val_data, o.seed, o.batch_size, o.eval_batches)
        self.model = build_model(self.config, device=self.device)
        self.optimizer = make_optimizer(self.model, o.lr, o.weight_decay, (o.beta1, o.beta2))
        self.state = TrainState()
        self.resumed_from = found[0] if found else None
        if found:
            self._restore_training(found[1])

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

    def _restore_training(self, folder: Path) -> None:
        from .. import load_pretrained

        weights = load_pretrained(folder).state_dict()
        self.model.load_state_dict(weights)
        optimizer_state, rng = read_trainer_tensors(folder, self.info)
        self.optimizer.load_state_dict(optimizer_state)
        self.state = TrainState(**self.info["state"])
        set_rng_state(rng)  # last: building the model above drew from torch's generator
        _warn(f"resuming {self.out} from {folder.name}")

    # ------------------------------------------------------------------ training
    def save_checkpoint(self) -> Path:
        def write(folder: Path) -> None:
            from .. import save_pretrained

            save_pretrained(self.model, folder, tokenizer=self.tokenizer)
            faults.during_save(self.state.step)
            info = {"format": STATE_FORMAT, "state": self.state.to_dict(), "options": self.options.to_dict(),
                    "config": self.config.to_dict(), "corpus_fingerprint": self.fingerprint}
            write_trainer_state(folder, info, self.optimizer)

        return write_checkpoint(self.ckpt_dir, self.state.step, write, self.options.keep_last)

    def train(self) -> PretrainResult:
        o = self.options
        tensorboard = self._tensorboard()
        for path in self.old_entries:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        log = MetricsLog(self.out / METRICS, keep_until=self.state.step if self.resumed_from is not None else None,
                         mirror=tensorboard)
        progress = Progress(o.progress, self.state.step, o.max_steps)
        if not self.val_batches:
            progress.write("plmlab: warning: the validation split is too small for one sequence; no evaluation")
        trainer = Trainer(self.model, self.optimizer, self.objective, self.train_data, self.val_batches, o,
                          self.state, self.save_checkpoint, log, progress, self.device)
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
        self._finish(trainer, result)
        return result

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
            result.val_tokens = sum(int((b["labels"] != -100).sum()) for b in self.val_batches)
            if o.objective == "clm":
                result.baselines = self._baselines()
        losses = [r["loss"] for r in read_metrics(self.out / METRICS) if isinstance(r["loss"], float)]
        result.train_loss = losses[-1] if losses else None
        result.final_dir = str(self._save_final())
        if o.sample_tokens and self.config.arch == "decoder" and self.tokenizer.eos_id is not None:
            result.sample = self._sample()  # a continuation of the prompt: decoders only

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
