"""Parallel sentence pairs for XLM's translation language modelling (TLM; Lample & Conneau 2019,
section 3.3): JSONL lines ``{"src": ..., "tgt": ..., "src_lang": "en", "tgt_lang": "fr"}``.

A pair travels through the ordinary corpus -> token shards path as one *document of four
sentences*, each kept whole (never split into sentences)::

    [src_lang, src, tgt_lang, tgt]      e.g. ["en", "The cat sleeps.", "fr", "Le chat dort."]

so the train/validation split is by pair, the shards cache and the corpus fingerprint cover the
languages too (a relabelled file is a different corpus), and `objectives/tlm.py` reads a pair
back as `data.sentences(d)`: the two language codes (decoded to their names) and the two
sentences' token ids. `read_corpus` takes a JSONL line as a pair when it has no "text" field but
any of the four pair fields; every field must then be a non-empty string (one line naming
`path:line` otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import PlmlabError
from .records import read_records

PAIR_FIELDS = ("src", "tgt", "src_lang", "tgt_lang")
SENTENCES_PER_PAIR = 4  # [src_lang, src, tgt_lang, tgt]


@dataclass(frozen=True)
class Pair:
    src: str
    tgt: str
    src_lang: str
    tgt_lang: str

    def document(self) -> list[str]:
        """The pair as a corpus document (see the module docstring)."""
        return [self.src_lang, self.src, self.tgt_lang, self.tgt]


def is_pair_record(record: dict) -> bool:
    return "text" not in record and any(key in record for key in PAIR_FIELDS)


def pair_from_record(where: str, record: dict) -> Pair:
    """`where` names the line in errors ("pairs.jsonl:3")."""
    values = []
    for key in PAIR_FIELDS:
        value = record.get(key)
        if not isinstance(value, str) or not value.strip():
            what = "missing field" if value is None else "empty field" if isinstance(value, str) else "non-string field"
            raise PlmlabError(f"{where}: {what} {key!r} (a pair line needs non-empty strings "
                              f"{', '.join(PAIR_FIELDS)})")
        values.append(value.strip())
    if any(len(v.split()) != 1 for v in values[2:]):
        raise PlmlabError(f"{where}: a language must be one code without spaces (\"en\"), got "
                          f"{values[2]!r} / {values[3]!r}")
    return Pair(*values)


def read_pairs(path: str | Path) -> list[Pair]:
    """Every line of a pair file (JSONL, or CSV / TSV with those four columns)."""
    return [pair_from_record(f"{path}:{n}", record) for n, record in read_records(path)]
