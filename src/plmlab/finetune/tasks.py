"""The fine-tuning task registry: `plmlab finetune --task NAME` looks the task up here.

A task says how to read its data, how the fine-tuned model differs from the pretrained one
(a head, a label set), how to turn a record into a model input, its loss and how to score
predictions. The training itself is the one Trainer's (train/loop.py, through
`finetune/run.py`): no task steps an optimizer or calls backward. To add one (T5's `text2text`, GLM's `cloze`):
subclass `Task` in a module of this package and decorate it with `@register_task`; list the
module in `TASK_MODULES` so it is imported when the registry is first used.

    @register_task
    class Text2Text(Task):
        name = "text2text"
        help = "sequence-to-sequence fine-tuning (input -> target text)"
        ...
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import torch

from ..config import Config
from ..errors import PlmlabError
from ..masks import IGNORE_INDEX

TASKS: dict[str, type["Task"]] = {}
# Modules that define tasks; each is imported when the registry is first used, and one that
# fails to import fails loudly (a broken task module must not just vanish from --task).
TASK_MODULES = ("classification", "text2text", "cloze")


class Task:
    """Subclasses set `name` / `help` and implement the methods below."""

    name = ""
    help = ""
    # commands to try on the fine-tuned model, shown at the end of `plmlab finetune`: formatted
    # with the run's options ({out}, {eval}, ...); a line naming an option the run left out is skipped
    next_steps: tuple[str, ...] = ()
    # the default learning rate at width 768 (options.default_lr scales it by 768 / width):
    # ELECTRA-Base's fine-tuning rate (Clark et al. 2020, table 7)
    base_lr = 1e-4

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

    def collate(self, examples: list[dict[str, np.ndarray]], tokenizer) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, model, batch: dict[str, torch.Tensor]):
        """(the training loss of one batch, the model output); by default the model's own loss
        (labels in the batch), a mean over the `count_targets` targets."""
        output = model(**batch)
        return output.loss, output

    def count_targets(self, batch: dict[str, torch.Tensor]) -> int:
        """What `forward`'s loss is a mean over (it weighs micro-batches): labelled positions."""
        return int((batch["labels"] != IGNORE_INDEX).sum())

    def evaluate(self, model, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        """Metrics over an evaluation set; the first key is the one reported first."""
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
