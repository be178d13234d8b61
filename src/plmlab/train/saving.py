"""Saving a training run -- checkpoints (model + trainer state) and the final model, crash-safe
-- and restoring the trainer's part of a checkpoint.

`Checkpointer` is what the Trainer calls every `save_every` steps: rank 0 writes the full
(unsharded) state -- under FSDP every rank first helps gather it -- into a folder sealed by
checkpoint.py (write aside, manifest, rename). `save_final` writes DIR/final the same way
(aside, then one rename), so a full disk never leaves half a final/ or its temp folder.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError

from ..errors import PlmlabError
from ..hf import save_pretrained
from .checkpoint import commit_dir, disk_error_reason, write_checkpoint
from .loop import TrainState
from .model_card import write_model_card
from .parallel import Dist, Parallelized, full_model_state, full_optimizer_state, param_names
from .parallel import load_optimizer_state
from .state import read_trainer_tensors, set_rng_state, write_trainer_state

STATE_FORMAT = 1  # trainer/state.json's layout


class Checkpointer:
    """`checkpointer()` saves the run's current step; `info()` is the JSON the task adds
    (options, config, corpus fingerprint ...), next to the loop's state and the world size."""

    def __init__(self, folder: Path, parallel: Parallelized, optimizer, precision, state, tokenizer,
                 info: Callable[[], dict], keep_last: int = 0, dist: Dist | None = None,
                 rebuild: Callable[[], torch.nn.Module] | None = None, model_format: str = "auto") -> None:
        self.folder, self.parallel, self.optimizer, self.precision = folder, parallel, optimizer, precision
        self.state, self.tokenizer, self.info, self.keep_last = state, tokenizer, info, keep_last
        self.dist = dist or Dist()
        self.rebuild = rebuild  # a fresh plain model on CPU, for FSDP's gathered weights
        self.model_format = model_format  # save_pretrained's: "auto" (HF where it can) or "plmlab"

    def __call__(self) -> Path | None:
        model, optimizer_state = self.parallel.model, None
        if self.parallel.fsdp:
            model = self.gathered_model()
            optimizer_state = full_optimizer_state(self.parallel.model, self.optimizer,
                                                   param_names(self.parallel.model))
        step = self.state.step

        def write(folder: Path) -> None:
            self.write_model(folder, model)
            self.write_state(folder, step, optimizer_state)

        return self.dist.on_main(lambda: write_checkpoint(self.folder, step, write, self.keep_last),
                                 "saving a checkpoint")

    def write_model(self, folder: Path, model) -> None:
        save_pretrained(model, folder, tokenizer=self.tokenizer, format=self.model_format)

    def write_state(self, folder: Path, step: int, optimizer_state: dict | None = None) -> None:
        info = {"format": STATE_FORMAT, "state": self.state.to_dict(), **self.info(),
                "world_size": self.dist.world, "grad_scaler": self.precision.state()}
        write_trainer_state(folder, info, self.optimizer if optimizer_state is None else _StateOnly(optimizer_state))

    def gathered_model(self):
        """FSDP: the gathered weights in a plain CPU model on rank 0 (a collective; None elsewhere)."""
        weights = full_model_state(self.parallel.model)
        if not self.dist.is_main:
            return None
        model = self.rebuild()
        model.load_state_dict(weights)
        return model


class _StateOnly:
    """What write_trainer_state needs of an optimizer: a state_dict (the gathered FSDP one)."""

    def __init__(self, state: dict) -> None:
        self.state = state

    def state_dict(self) -> dict:
        return self.state


def save_final(model, out: Path, tokenizer, card: dict | None = None) -> Path:
    """DIR/final, with its model card (README.md) when `card` gives the facts, written aside and
    renamed into place; on failure the temp folder is removed and an earlier final/ (and every
    checkpoint) is kept."""
    final = out / "final"
    tmp = out / f".tmp-final-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_pretrained(model, tmp, tokenizer=tokenizer)
        if card is not None:
            write_model_card(tmp, card)
        commit_dir(tmp, final)
    except (OSError, SafetensorError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PlmlabError(f"could not save the final model in {final}: {disk_error_reason(e)}; "
                          "the checkpoints are kept (--resume writes final/ again)") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def restore_training(folder: Path, info: dict, parallel: Parallelized, optimizer, precision):
    """The loop's state, the optimizer (re-sharded under FSDP), fp16's loss scale and every RNG
    of a checkpoint; a forged or corrupt trainer state is one line. The RNGs come last: building
    the model drew from torch's generator."""
    optimizer_state, rng = read_trainer_tensors(folder, info)
    state = TrainState.from_dict(info.get("state"), str(folder / "trainer"))
    try:
        load_optimizer_state(parallel, optimizer, optimizer_state)
        precision.load_state(info.get("grad_scaler"))
        set_rng_state(rng)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        raise PlmlabError(f"{folder}: the trainer state is corrupt ({type(e).__name__}: {e})") from None
    print(f"plmlab: resuming {folder.parent.parent} from {folder.name}", file=sys.stderr, flush=True)
    return state
