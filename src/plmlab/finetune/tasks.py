"""Fine-tuning tasks: `ExampleTask` (encoded examples as train/task.py's protocol) and the
registry `plmlab finetune --task NAME` looks a task up in.

`ExampleTask` is what every fine-tuning stage trains through the one Trainer (train/loop.py):
its encoded examples in batches of `batch_size`, cut from each epoch's seeded permutation (an
epoch's last batch smaller; no batch straddles two epochs), the stage's loss, and its
evaluation as `eval_*`. A stage says how to collate, what its loss is a mean over
(`count_targets`), the loss itself (`forward`), per-step metrics and the evaluation scores;
SFT (finetune/sft.py) and DPO (finetune/dpo.py) extend it directly.

A registered `Task` is an `ExampleTask` that also reads its data, says how the fine-tuned model
differs from the pretrained one (a head, a label set) and encodes a record. To add one (T5's
`text2text`, GLM's `cloze`): subclass `Task` in a module of this package, decorate it with
`@register_task`, list the module in `TASK_MODULES` so it is imported when the registry is
first used, and implement `read`, `model_config`, `encode`, `collate` and `score`:

    @register_task
    class Text2Text(Task):
        name = "text2text"
        help = "sequence-to-sequence fine-tuning (input -> target text)"

        def read(self, path): ...                          # validated records
        def model_config(self, base, train): ...           # the config to fine-tune
        def encode(self, record, tokenizer, config): ...   # a record -> the model's arrays
        def collate(self, examples): ...                   # arrays -> a batch (self.pad_id)
        def score(self, model, batches): ...               # {"exact_match": ..., "loss": ...}

The model's own loss (labels in the batch) over the labelled positions is the default
`forward` / `count_targets`; cloze overrides both (a mean over examples).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import torch

from ..config import Config
from ..errors import PlmlabError
from ..masks import IGNORE_INDEX
from ..train.batching import BatchOrder, count_cut
from ..train.data import count_tokens, finetune_shuffle
from ..train.task import Batch, Loss, Metrics, fingerprint_arrays


class ExampleTask:
    """Encoded examples as the Trainer's task (train/task.py); `use` gives it its data."""

    # the default learning rate at width 768 (options.default_lr scales it by 768 / width):
    # ELECTRA-Base's fine-tuning rate (Clark et al. 2020, table 7)
    base_lr = 1e-4
    DERIVED: tuple[str, ...] = ()  # example keys computed from the model, not the data (no fingerprint)

    def use(self, examples: list[dict], eval_examples: list[dict], pad_id: int, batch_size: int,
            seed: int) -> "ExampleTask":
        """The training examples (hashed once: every checkpoint records the hash), the evaluation
        ones (collated once, in file order), the batch geometry."""
        self.examples, self.pad_id, self.batch_size, self.seed = examples, pad_id, batch_size, seed
        self._fingerprint = fingerprint_arrays(examples, self.DERIVED)
        self.eval_batches = [self.collate(eval_examples[s:s + batch_size])
                             for s in range(0, len(eval_examples), batch_size)]
        return self

    # ------------------------------------------------------------------ what a stage says
    def collate(self, examples: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, model, batch: dict[str, torch.Tensor]):
        """(the loss of one batch, a mean over its `count_targets`, the model output); by default
        the model's own loss (labels in the batch)."""
        output = model(**batch)
        return output.loss, output

    def count_targets(self, batch: dict[str, torch.Tensor]) -> int:
        """What `forward`'s loss is a mean over (it weighs micro-batches): labelled positions."""
        return int((batch["labels"] != IGNORE_INDEX).sum())

    def count_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return count_tokens(batch)

    def metrics(self, batch: dict[str, torch.Tensor], output) -> Metrics:
        """Per-step metrics beside the loss (none by default)."""
        return {}

    def score(self, model, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        """Metrics over the evaluation batches (on the device); the first key is reported first."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the protocol (train/task.py)
    def make_order(self, state) -> BatchOrder:
        return BatchOrder(len(self.examples), count_cut(self.batch_size), self.seed, state.epoch, state.position,
                          batch_size=self.batch_size, shuffle=finetune_shuffle)

    def batch(self, picks: list[tuple[int, int]]) -> Batch:
        inputs = self.collate([self.examples[i] for _, i in picks])
        return Batch(inputs, self.count_targets(inputs), self.count_tokens(inputs))

    def loss(self, model, batch: Batch) -> Loss:
        value, output = self.forward(model, batch.inputs)
        with torch.no_grad():
            return Loss(value, self.metrics(batch.inputs, output), output)

    def evaluate(self, model, autocast, device: torch.device) -> dict[str, float]:
        if not self.eval_batches:
            return {}
        batches = [{k: v.to(device) for k, v in b.items()} for b in self.eval_batches]
        with autocast():
            scores = self.score(model, batches)
        return {f"eval_{k}": v for k, v in scores.items()}

    def fingerprint(self) -> str:
        return self._fingerprint

    def steps_per_epoch(self, world: int = 1, grad_accum: int = 1) -> int:
        """Steps of one epoch: its batches, `world x grad_accum` of them per step (where they do not
        divide evenly, an "epoch" of steps ends a batch or so off the data's epoch boundary)."""
        return steps_per_epoch(len(self.examples), self.batch_size, world, grad_accum)


def steps_per_epoch(n_examples: int, batch_size: int, world: int = 1, grad_accum: int = 1) -> int:
    batches = -(-n_examples // batch_size)
    return max(1, batches // (world * grad_accum))


TASKS: dict[str, type["Task"]] = {}
# Modules that define tasks; each is imported when the registry is first used, and one that
# fails to import fails loudly (a broken task module must not just vanish from --task).
TASK_MODULES = ("classification", "text2text", "cloze")


class Task(ExampleTask):
    """A registered task: subclasses set `name` / `help` and implement the methods below."""

    name = ""
    help = ""
    # commands to try on the fine-tuned model, shown at the end of `plmlab finetune`: formatted
    # with the run's options ({out}, {eval}, ...); a line naming an option the run left out is skipped
    next_steps: tuple[str, ...] = ()

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options  # every parsed CLI option (labels, max_length, truncate ...)

    @classmethod
    def add_arguments(cls, parser) -> None:
        """Task-specific CLI options (names must not clash with other tasks')."""

    def read(self, path: str) -> list[dict]:
        """Validated records of a data file (a PlmlabError names the file and line of a bad one)."""
        raise NotImplementedError

    def model_config(self, base: Config, train: list[dict]) -> Config:
        """The config of the model to fine-tune, from the pretrained model's config."""
        return base

    def encode(self, record: dict, tokenizer, config: Config) -> dict[str, np.ndarray]:
        """One record -> the model's keyword arrays (labels included)."""
        raise NotImplementedError


def register_task(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls
    return cls


def _load() -> None:
    for name in TASK_MODULES:
        importlib.import_module(f"{__package__}.{name}")


def get_task(name: str) -> type[Task]:
    _load()
    if name not in TASKS:
        raise PlmlabError(f"unknown task {name!r}; choose one of {', '.join(sorted(TASKS))}")
    return TASKS[name]


def task_names() -> list[str]:
    _load()
    return sorted(TASKS)
