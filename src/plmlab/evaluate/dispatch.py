"""One entry point for every evaluation: `run(EvalOptions(...)) -> EvalResult`.

    from plmlab.evaluate import EvalOptions, run
    run(EvalOptions(model="runs/gpt", task="perplexity")).metrics["bits_per_byte"]

A task declares the models it fits (`TaskSpec.fits`, read from the model's Config) and how it
runs; a model given a task that does not fit it is one line naming the tasks that do. Multiple
choice, generation, the built-in suite and the lm-evaluation-harness adapter live in their own
modules (choice.py, generate.py, builtin.py, plmlab.lmeval); plmlab.lmeval, which needs lm-eval
(an optional extra), is imported only when its tasks are asked for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..data.files import write_text_atomic
from ..errors import PlmlabError, not_found
from ..families import family_of
from ..nn.quantize import check_scheme, quantize
from ..families.fits import Fits
from ..pipelines import load_model_and_tokenizer
from .builtin import evaluate_suite
from .choice import evaluate_choice, read_choice_items
from .generate import evaluate_generate, read_generate_items
from .labels import (evaluate_classification, evaluate_token_classification, read_classification,
                     read_token_classification)
from .mlm import evaluate_mlm
from .perplexity import evaluate_perplexity
from .result import EvalResult
from .span import evaluate_span_corruption
from .text import read_documents


@dataclass(frozen=True)
class EvalOptions:
    model: str  # checkpoint or training run directory
    task: str | None = None  # one of TASKS; or suite / lm_eval_tasks
    suite: str | None = None  # "builtin"
    lm_eval_tasks: tuple[str, ...] = ()  # lm-evaluation-harness task names
    data: str | None = None  # a file or folder (perplexity / mlm / span-corruption: default the built-in validation split)
    tokenizer: str | None = None  # default: the checkpoint's
    device: str = "cpu"
    batch_size: int = 16
    seed: int = 0
    max_length: int | None = None  # window / piece length in tokens (default: the model's context)
    stride: int | None = None  # perplexity's sliding-window stride (default: max_length // 2)
    shots: tuple[int, ...] = (0,)  # few-shot demonstrations: one value for --task choice, a list for the suite
    demos: str | None = None  # --task choice: the demonstrations' JSONL (default: the items themselves)
    max_new_tokens: int = 32  # --task generate
    include_path: str | None = None  # lm-eval: a folder of task YAMLs
    limit: int | None = None  # lm-eval: items per task
    num_fewshot: int | None = None  # lm-eval: demonstrations
    quantize: str | None = None  # "int8" / "int8-dynamic": score the model as --quantize would run it


@dataclass(frozen=True)
class TaskSpec:
    fits: Callable  # (config) -> bool
    what: str  # the models it fits, for the error line
    run: Callable  # (model, tokenizer, options) -> EvalResult
    needs_data: bool = False  # no default data: --data is required


def _has_head(config, skeleton: Fits) -> bool:
    """An LM / MLM head on that skeleton (not a fine-tuned classifier's)."""
    return skeleton.fits(config) and config.head != "none" and config.classifier == "none"


def _perplexity(model, tokenizer, o: EvalOptions) -> EvalResult:
    docs = read_documents(o.data)
    result = evaluate_perplexity(model, tokenizer, docs.texts, o.max_length, o.stride, o.batch_size)
    for item, source in zip(result.items, docs.sources):  # one item per document
        item["source"] = source
    return _said(result, docs)


def _mlm(model, tokenizer, o: EvalOptions) -> EvalResult:
    docs = read_documents(o.data)
    return _said(evaluate_mlm(model, tokenizer, docs.texts, o.seed, o.batch_size, o.max_length), docs)


def _span(model, tokenizer, o: EvalOptions) -> EvalResult:
    docs = read_documents(o.data)
    return _said(evaluate_span_corruption(model, tokenizer, docs.texts, o.seed, o.batch_size, o.max_length), docs)


def _said(result: EvalResult, docs) -> EvalResult:
    """The result, saying what text it scored: as written, or sentences re-joined (text.py)."""
    result.metrics["text"] = docs.how
    return result


def _classification(model, tokenizer, o: EvalOptions) -> EvalResult:
    return evaluate_classification(model, tokenizer, read_classification(o.data))


def _token_classification(model, tokenizer, o: EvalOptions) -> EvalResult:
    return evaluate_token_classification(model, tokenizer, read_token_classification(o.data))


def _choice(model, tokenizer, o: EvalOptions) -> EvalResult:
    if len(o.shots) != 1:
        raise PlmlabError(f"--task choice takes one --shots value, got {','.join(map(str, o.shots))}")
    items = read_choice_items(o.data)
    demos = read_choice_items(o.demos) if o.demos else None
    return evaluate_choice(model, tokenizer, items, shots=o.shots[0], demos=demos, seed=o.seed, batch_size=o.batch_size)


def _generate(model, tokenizer, o: EvalOptions) -> EvalResult:
    items = read_generate_items(o.data)
    return evaluate_generate(model, tokenizer, items, max_new_tokens=o.max_new_tokens, batch_size=o.batch_size)


TASKS: dict[str, TaskSpec] = {
    "perplexity": TaskSpec(lambda c: _has_head(c, Fits(arch="decoder")), "decoders with an LM head (GPT, LLaMA, GLM)", _perplexity),
    "mlm": TaskSpec(lambda c: _has_head(c, Fits(arch="encoder")), "encoders with an MLM head (BERT, RoBERTa, ALBERT)", _mlm),
    "span-corruption": TaskSpec(lambda c: _has_head(c, Fits(arch="encoder-decoder")), "encoder-decoders (T5)", _span),
    "classification": TaskSpec(lambda c: c.classifier == "sequence", "fine-tuned text classifiers", _classification,
                               needs_data=True),
    "token-classification": TaskSpec(lambda c: c.classifier == "token", "fine-tuned taggers", _token_classification,
                                     needs_data=True),
    "choice": TaskSpec(lambda c: c.head != "none" and c.classifier == "none", "models with an LM or MLM head", _choice,
                       needs_data=True),
    "generate": TaskSpec(lambda c: family_of(c).generates and c.head != "none" and c.classifier == "none",
                         "decoders and encoder-decoders with an LM head", _generate, needs_data=True),
}


def tasks_for(config) -> list[str]:
    return [name for name, spec in TASKS.items() if spec.fits(config)]


def known_task(task: str) -> TaskSpec:
    if task not in TASKS:
        raise PlmlabError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return TASKS[task]


def check_task(task: str, config) -> TaskSpec:
    """The task's spec, or one line: unknown task, or a model it does not fit (naming those that do)."""
    spec = known_task(task)
    if not spec.fits(config):
        kind = config.arch + (f" {config.classifier} classifier" if config.classifier != "none" else
                              f" with head {config.head}")
        raise PlmlabError(f"--task {task} is for {spec.what}; this model: {kind} "
                          f"(tasks that fit it: {', '.join(tasks_for(config)) or 'none'})")
    return spec


def check_options(o: EvalOptions) -> None:
    """What can be checked before any model is loaded."""
    chosen = [x for x in (o.task, o.suite, o.lm_eval_tasks) if x]
    if len(chosen) != 1:
        raise PlmlabError("give exactly one of --task NAME, --suite builtin or --lm-eval-tasks NAMES")
    if o.task and known_task(o.task).needs_data and not o.data:
        raise PlmlabError(f"--task {o.task} needs --data FILE")
    if o.suite is not None and o.suite != "builtin":
        raise PlmlabError(f"unknown suite {o.suite!r}; the suite there is: builtin")
    if any(k < 0 for k in o.shots):
        raise PlmlabError(f"--shots must be non-negative, got {','.join(map(str, o.shots))}")
    if o.batch_size < 1:
        raise PlmlabError(f"--batch-size must be >= 1, got {o.batch_size}")
    if o.stride is not None and o.task != "perplexity":
        raise PlmlabError("--stride is the sliding window of --task perplexity")
    if o.stride is not None and o.max_length is not None and o.stride > o.max_length:
        raise PlmlabError(f"--stride {o.stride} is larger than --max-length {o.max_length}")
    if o.stride is not None and o.stride <= 0:
        raise PlmlabError(f"--stride must be >= 1, got {o.stride}")
    check_scheme(o.quantize)
    if not Path(o.model).exists():
        raise not_found(o.model, "checkpoint directory")


def run(o: EvalOptions) -> EvalResult:
    """Evaluate one model (see the module docstring)."""
    check_options(o)
    if o.lm_eval_tasks:
        from ..lmeval import run_lm_eval

        return run_lm_eval(o.model, list(o.lm_eval_tasks), include_path=o.include_path, num_fewshot=o.num_fewshot,
                           limit=o.limit, batch_size=o.batch_size, quantize=o.quantize)
    model, tokenizer = load_model_and_tokenizer(o.model, o.tokenizer, o.device)
    model = quantize(model, o.quantize)
    if o.suite:
        return evaluate_suite(model, tokenizer, shots=tuple(o.shots), seed=o.seed, batch_size=o.batch_size)
    return check_task(o.task, model.config).run(model, tokenizer, o)


def compare(models: list[str], o: EvalOptions) -> dict[str, EvalResult]:
    """The same evaluation of each model, by a readable name (the directory's, or its path when two share one)."""
    if len(models) < 2:
        raise PlmlabError("--compare needs two or more model directories")
    for m in models:
        check_options(replace(o, model=m))
    names = [Path(m).name or Path(m).resolve().name for m in models]
    if len(set(names)) < len(names):
        names = list(models)
    return {name: run(replace(o, model=m)) for name, m in zip(names, models)}


# --- per-item scores, written atomically ---------------------------------------------------------
def check_out(path: str | None, overwrite: bool) -> None:
    """Before any work: never clobber a file that is there without --overwrite."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise PlmlabError(f"--out {path} is a directory; give a file name")
    if os.path.lexists(p) and not overwrite:
        raise PlmlabError(f"--out {path} exists; pass --overwrite to replace it")
    if not p.parent.is_dir() and str(p.parent) not in ("", "."):
        raise PlmlabError(f"--out {path}: no such directory {p.parent}")


def write_items(path: str, items: list[dict]) -> Path:
    """JSON lines, through a temporary file: a reader sees the old file or the whole new one."""
    target = Path(path)  # an OSError (full disk, permissions) is the CLI's one line; the old file stays
    write_text_atomic(target, "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items))
    return target
