"""`plmlab tag --model RUN TEXT ...`: a fine-tuned token classifier's label for each word, and the
entities they make (plmlab.pipelines.TokenClassification). Inputs as for `plmlab classify`;
JSONL objects carry `tokens` (a list of words) or `text`."""

from __future__ import annotations

from ..pipelines import TokenClassification
from .classify import add_common, run_verb


def register(sub) -> None:
    p = sub.add_parser("tag", help="label each word of texts with a fine-tuned token classifier (e.g. NER)")
    add_common(p, "a text to tag (split into words at whitespace)")
    p.set_defaults(func=run)


def show(result: dict) -> str:
    """word/LABEL for each word, then the entities: `the/O cat/ANIMAL sat/O  [ANIMAL: cat]`."""
    words = " ".join(f"{w['word']}/{w['label']}" for w in result["words"])
    entities = "  ".join(f"[{e['label']}: {e['text']}]" for e in result["entities"])
    return f"{words}  {entities}" if entities else words


def run(args) -> int:
    return run_verb(args, TokenClassification, show)
