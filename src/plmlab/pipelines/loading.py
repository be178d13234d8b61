"""What every pipeline starts with: a model and its tokenizer that belong together, on a device,
and input texts that the tokenizer can take."""

from __future__ import annotations

import torch

from ..errors import PlmlabError
from ..hf import load_pretrained, resolve_dir
from ..tokenizers import load_tokenizer


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`auto` (or None) is CUDA when there is one; anything else must parse and exist."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise PlmlabError(f"{device!r} is not a device (cpu, cuda, cuda:N, mps or auto)") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise PlmlabError(f"device {device!r} does not exist on this machine")
    return dev


def load_model_and_tokenizer(model_dir, tokenizer_dir=None, device: str | torch.device = "cpu"):
    """(model in eval mode on `device`, tokenizer) from a checkpoint or training run directory,
    checked against each other: every id the tokenizer makes must have an embedding."""
    model_dir = resolve_dir(model_dir)  # a training run directory: its final/ model
    model = load_pretrained(model_dir)
    try:
        tokenizer = load_tokenizer(tokenizer_dir or model_dir)
    except PlmlabError as e:
        if tokenizer_dir:
            raise
        raise PlmlabError(f"{e} (the model directory has no tokenizer: give one, --tokenizer DIR)") from None
    if tokenizer.vocab_size > model.config.vocab_size:
        raise PlmlabError(f"the tokenizer has {tokenizer.vocab_size} ids but the model only "
                          f"{model.config.vocab_size} embeddings: they do not belong together")
    return model.to(resolve_device(device)).eval(), tokenizer


def check_text(text, what: str = "text") -> str:
    """The text itself, or one line saying why the tokenizer cannot take it: not a string, or
    lone surrogates (undecodable bytes that Python's surrogateescape let through from argv/stdin)."""
    if not isinstance(text, str):
        raise PlmlabError(f"the {what} must be a string, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise PlmlabError(f"the {what} is not valid UTF-8 (undecodable byte(s) at character {e.start})") from None
    return text


def encode(tokenizer, text: str, max_len: int, truncate: bool = False) -> list[int]:
    """Token ids with the tokenizer's special tokens; an error (or a cut) past `max_len`."""
    ids = tokenizer.encode(check_text(text))
    if len(ids) > max_len:
        if not truncate:
            raise PlmlabError(f"the text has {len(ids)} tokens, more than the model's {max_len} positions "
                              "(shorten it or truncate it: truncate=True, --truncate)")
        ids = ids[: max_len - 1] + ids[-1:]  # keep the closing special token
    return ids


def model_device(model) -> torch.device:
    """Where a model's inputs go; a wrapper without parameters (that moves inputs itself): the CPU."""
    parameters = getattr(model, "parameters", None)
    return next(parameters()).device if parameters is not None else torch.device("cpu")
