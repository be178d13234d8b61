"""Records of supervised data files: CSV / TSV (a header row) or JSONL (one object per line),
by extension; and text-to-text pairs ({"input": ..., "target": ...}) on top of them.

One reader for fine-tuning data (finetune/) and T5's mixture tasks (objectives/mixture.py):
every bad file or line is one PlmlabError naming `path:line`.
"""

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
    except OSError as e:
        raise PlmlabError(f"cannot read {path}: {e.strerror}") from None
    if path.suffix.lower() in (".csv", ".tsv"):
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        records = [(n + 2, {k: v for k, v in row.items() if k is not None}) for n, row in enumerate(reader)]
    else:
        records = [(n, _json_object(path, n, line)) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not records:
        raise PlmlabError(f"{path}: no records")
    return records


def _json_object(path: Path, n: int, line: str) -> dict:
    try:
        record = json.loads(line)
    except ValueError as e:
        raise PlmlabError(f"{path}:{n}: invalid JSON ({e})") from None
    if not isinstance(record, dict):
        raise PlmlabError(f"{path}:{n}: expected a JSON object")
    return record


def require_field(path, line: int, record: dict, key: str, kind=str):
    value = record.get(key)
    if value is None or value == "":
        raise PlmlabError(f"{path}:{line}: missing field {key!r}")
    if not isinstance(value, kind):
        raise PlmlabError(f"{path}:{line}: field {key!r} should be a {kind.__name__}")
    return value


def read_text_pairs(path: str | Path) -> list[tuple[int, str, str]]:
    """(line number, input, target) of every record; both must be non-empty strings."""
    pairs = []
    for n, record in read_records(path):
        source, target = record.get("input"), record.get("target")
        if not isinstance(source, str) or not isinstance(target, str):
            raise PlmlabError(f'{path}:{n}: expected an object with string fields "input" and "target"')
        if not source.strip():
            raise PlmlabError(f"{path}:{n}: empty input")
        if not target.strip():
            raise PlmlabError(f"{path}:{n}: empty target")
        pairs.append((n, source, target))
    return pairs


def read_labelled_texts(path: str | Path) -> list[dict]:
    """Classification data (CSV or JSONL): `text`, optional `text_pair`, `label` (a string or an
    integer) -> records {text, text_pair, label, _where}; fine-tuning and evaluation read the same."""
    records = []
    for line, r in read_records(path):
        text = require_field(path, line, r, "text")
        pair = r.get("text_pair") or None
        label = r.get("label")
        if label is None or label == "":
            raise PlmlabError(f"{path}:{line}: missing field 'label'")
        records.append({"text": text, "text_pair": pair, "label": str(label), "_where": f"{path}:{line}"})
    return records


def read_tagged_words(path: str | Path) -> list[dict]:
    """Token classification data (JSONL): `tokens` (the words), `labels` (one per word) ->
    records {tokens, labels, _where}."""
    records = []
    for line, r in read_records(path):
        words = require_field(path, line, r, "tokens", list)
        labels = require_field(path, line, r, "labels", list)
        if len(words) != len(labels):
            raise PlmlabError(f"{path}:{line}: {len(words)} tokens but {len(labels)} labels")
        records.append({"tokens": [str(w) for w in words], "labels": [str(x) for x in labels],
                        "_where": f"{path}:{line}"})
    return records
