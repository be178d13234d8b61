"""Reading evaluation items from JSON lines, each line checked: a bad line is one error that
names FILE:LINE and says what is wrong; an empty file is an error too."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import PlmlabError


def read_jsonl(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """[(where, object)] of every non-blank line (where = "FILE:LINE"); refuses a missing or
    empty file, a line that is not JSON, or one that is not an object."""
    path = Path(path)
    if not path.is_file():
        raise PlmlabError(f"data file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise PlmlabError(f"{path}: cannot be read as UTF-8 text ({e})") from None
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise PlmlabError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise PlmlabError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        rows.append((where, obj))
    if not rows:
        raise PlmlabError(f"{path}: no items (the file is empty)")
    return rows


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
