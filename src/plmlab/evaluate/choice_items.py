"""Reading evaluation items from JSON lines, each line checked: a bad line is one error that
names FILE:LINE and says what is wrong; an empty file is an error too."""

from __future__ import annotations

import os

from ..errors import PlmlabError
from ..data.records import read_records


def read_jsonl(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """[(where, object)] of every non-blank line (where = "FILE:LINE"), read as fine-tuning data
    is (plmlab.data.records.read_records): a missing or empty file, a line that is not JSON or
    not an object, is one error."""
    return [(f"{path}:{n}", record) for n, record in read_records(path)]


def text_field(obj: dict, key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise PlmlabError(f"{where}: {key!r} must be a string" + ("" if key in obj else f" (the line has no {key!r})"))
    return value


def check_choice_item(obj: dict, where: str) -> dict:
    """{"context": str, "choices": [non-empty str, ...] (at least 2), "label": int in range}."""
    context = text_field(obj, "context", where)
    choices = obj.get("choices")
    if not isinstance(choices, list) or len(choices) < 2:
        raise PlmlabError(f"{where}: 'choices' must be a list of at least 2 strings"
                          + ("" if "choices" in obj else " (the line has no 'choices')"))
    if not all(isinstance(c, str) and c for c in choices):
        raise PlmlabError(f"{where}: every choice must be a non-empty string")
    label = obj.get("label")
    if isinstance(label, bool) or not isinstance(label, int):
        raise PlmlabError(f"{where}: 'label' must be an integer index into 'choices'"
                          + ("" if "label" in obj else " (the line has no 'label')"))
    if not 0 <= label < len(choices):
        raise PlmlabError(f"{where}: label {label} is out of range for {len(choices)} choices (0..{len(choices) - 1})")
    return {"context": context, "choices": list(choices), "label": label}


def read_choice_items(path: str | os.PathLike) -> list[dict]:
    """Validated multiple-choice items of a JSONL file (see check_choice_item)."""
    return [check_choice_item(obj, where) for where, obj in read_jsonl(path)]
