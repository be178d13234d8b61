"""Reading fine-tuning data: CSV (header row) or JSONL (one object per line), by extension."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..errors import PlmlabError


def read_records(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, record) pairs; `.csv` / `.tsv` by header, anything else as JSONL."""
    path = Path(path)
    if not path.is_file():
        raise PlmlabError(f"{path}: no such data file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise PlmlabError(f"{path}: not UTF-8 text ({e.reason})") from None
    if path.suffix.lower() in (".csv", ".tsv"):
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        records = [(n + 2, {k: v for k, v in row.items() if k is not None}) for n, row in enumerate(reader)]
    else:
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise PlmlabError(f"{path}:{n}: not valid JSON ({e})") from None
            if not isinstance(record, dict):
                raise PlmlabError(f"{path}:{n}: expected a JSON object")
            records.append((n, record))
    if not records:
        raise PlmlabError(f"{path}: no records")
    return records


def require_field(path, line: int, record: dict, key: str, kind=str):
    value = record.get(key)
    if value is None or value == "":
        raise PlmlabError(f"{path}:{line}: missing field {key!r}")
    if not isinstance(value, kind):
        raise PlmlabError(f"{path}:{line}: field {key!r} should be a {kind.__name__}")
    return value
