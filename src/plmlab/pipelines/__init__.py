"""Pipelines: text in, text out, plain Python results, one per task.

    import plmlab
    fill = plmlab.pipeline("fill-mask", model="bert-run/", top_k=3)
    fill("the cat [MASK] on the mat")   # {"text": ..., "masks": [{"position", "predictions": [...]}]}

`model` is a checkpoint or training run directory (its tokenizer is loaded from there, or from
`tokenizer`), or an already loaded model with its `tokenizer` object. The `plmlab` command's
verbs (generate, fill-mask, fill-blanks, classify, tag) are thin layers over these.
"""

from __future__ import annotations

from ..errors import PlmlabError
from ..generation import prepare_for_decoding
from ..tokenizers import load_tokenizer
from .base import Pipeline
from .chat import Chat
from .classification import TextClassification, TokenClassification, group_entities
from .fill_blanks import FillBlanks
from .fill_mask import FillMask, fill_mask
from .loading import check_text, encode, load_model_and_tokenizer, resolve_device
from .span_fills import span_result
from .text_generation import Text2Text, TextGeneration, encode_prompt

PIPELINES: dict[str, type[Pipeline]] = {cls.task: cls for cls in (
    TextGeneration, Text2Text, Chat, FillMask, FillBlanks, TextClassification, TokenClassification)}


def pipeline(task: str, model, tokenizer=None, device="cpu", quantize: str | None = None, compile: bool = False,
             **options) -> Pipeline:
    """A callable for `task` (one of PIPELINES) over `model` (a directory, or a loaded model with
    its `tokenizer`); `options` are the task's defaults for every call (see each class's `defaults`).
    `quantize="int8"` turns the model's linear layers to int8 (in place, CPU, inference only);
    `compile=True` compiles its decode step (see plmlab.generation.prepare_for_decoding)."""
    if task not in PIPELINES:
        raise PlmlabError(f"unknown pipeline task {task!r}; choose one of {', '.join(PIPELINES)}")
    if _is_path(model):
        model, tokenizer = load_model_and_tokenizer(model, tokenizer, device)
    elif tokenizer is None:
        raise PlmlabError("a loaded model needs its tokenizer: pipeline(task, model, tokenizer=TOKENIZER_OR_DIR)")
    elif _is_path(tokenizer):
        tokenizer = load_tokenizer(tokenizer)
    return PIPELINES[task](prepare_for_decoding(model, quantize, compile), tokenizer, **options)


def _is_path(x) -> bool:
    return isinstance(x, str) or hasattr(x, "__fspath__")


__all__ = ["pipeline", "PIPELINES", "Pipeline", "TextGeneration", "Text2Text", "Chat", "FillMask", "FillBlanks",
           "TextClassification", "TokenClassification", "load_model_and_tokenizer", "resolve_device", "prepare_for_decoding",
           "fill_mask", "encode", "encode_prompt", "check_text", "span_result", "group_entities"]
