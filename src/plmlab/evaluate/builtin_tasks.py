"""The built-in tasks: multiple-choice items written from the built-in corpus, no download.

Items are drawn only from the *validation* documents, the ones pretraining holds out
(`plmlab.data.shards.split_documents` with pretraining's defaults: 5 %, seed 0), so a model
pretrained on the built-in corpus never trained on them. Every task has 4 choices (chance 1/4):

    next_sentence   context: a sentence; choices: the sentence that follows it in its document,
                    and three sentences of other validation documents
    swapped_words   context: the previous sentence; choices: the next one as written, and three
                    copies of it with two of its words swapped
    cloze           context: the previous sentence and the start of the next one; choices: the
                    word that comes next, and three words of other validation documents

The corpus keeps docstrings and help topics but not the names of the functions they document
(see plmlab/data/builtin.py), so there is no docstring -> name task. Each item records the
index of its `source` document in `builtin_documents()`. Drawing is deterministic for a seed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..data import builtin_documents
from ..data.shards import split_documents
from ..errors import PlmlabError

VAL_FRACTION, SPLIT_SEED = 0.05, 0  # pretraining's split (plmlab.data.build_token_data's defaults)
N_CHOICES = 4
MIN_WORDS, MAX_WORDS = 6, 40  # sentences short enough to score quickly, long enough to swap words in
Documents = list[tuple[int, list[str]]]  # (index in builtin_documents(), sentences)


def validation_documents(documents: list[list[str]] | None = None) -> Documents:
    """The held-out documents of the built-in corpus (or of `documents`), with their indices."""
    docs = builtin_documents() if documents is None else documents
    kept = [i for i, doc in enumerate(docs) if doc]  # as build_token_data: blank documents are skipped
    is_val = split_documents(len(kept), VAL_FRACTION, SPLIT_SEED)
    return [(i, list(docs[i])) for i, val in zip(kept, is_val) if val]


def _fits(sentence: str) -> bool:
    return MIN_WORDS <= len(sentence.split()) <= MAX_WORDS


def _place(answer: str, distractors: list[str], rng: np.random.Generator) -> tuple[list[str], int]:
    """The answer at a random position among the distractors."""
    label = int(rng.integers(N_CHOICES))
    return distractors[:label] + [answer] + distractors[label:], label


def _others(pool: list[tuple[int, str]], doc: int, exclude: str, rng: np.random.Generator) -> list[str] | None:
    """N_CHOICES - 1 distinct strings of `pool` from documents other than `doc`."""
    picked: list[str] = []
    for j in rng.permutation(len(pool)):
        source, text = pool[j]
        if source != doc and text != exclude and text not in picked:
            picked.append(text)
            if len(picked) == N_CHOICES - 1:
                return picked
    return None


def next_sentence(docs: Documents, rng: np.random.Generator) -> list[dict]:
    pool = [(d, s) for d, sents in docs for s in sents if _fits(s)]
    items = []
    for d, sents in docs:
        for a, b in zip(sents, sents[1:]):
            if _fits(a) and _fits(b) and (others := _others(pool, d, b, rng)):
                choices, label = _place(b, others, rng)
                items.append({"context": a, "choices": choices, "label": label, "source": d})
    return items


def swapped_words(docs: Documents, rng: np.random.Generator) -> list[dict]:
    items = []
    for d, sents in docs:
        for a, b in zip(sents, sents[1:]):
            words = b.split()
            if not (_fits(a) and _fits(b)) or len(set(words)) < 4:
                continue
            variants: list[str] = []
            for _ in range(20):  # distinct words at two places: a sentence that differs from the original
                i, j = rng.choice(len(words), size=2, replace=False)
                swapped = list(words)
                swapped[i], swapped[j] = swapped[j], swapped[i]
                text = " ".join(swapped)
                if text != b and text not in variants:
                    variants.append(text)
                if len(variants) == N_CHOICES - 1:
                    choices, label = _place(b, variants, rng)
                    items.append({"context": a, "choices": choices, "label": label, "source": d})
                    break
    return items


def _is_word(w: str) -> bool:
    return w.isalpha() and len(w) >= 3


def cloze(docs: Documents, rng: np.random.Generator) -> list[dict]:
    pool = [(d, w) for d, sents in docs for s in sents for w in s.split() if _is_word(w)]
    items = []
    for d, sents in docs:
        for a, b in zip(sents, sents[1:]):
            words = b.split()
            spots = [j for j in range(3, len(words)) if _is_word(words[j])]
            if not (_fits(a) and _fits(b)) or not spots:
                continue
            j = spots[int(rng.integers(len(spots)))]
            if others := _others(pool, d, words[j], rng):
                choices, label = _place(words[j], others, rng)
                items.append({"context": a + " " + " ".join(words[:j]), "choices": choices, "label": label,
                              "source": d})
    return items


TASKS: dict[str, Callable[[Documents, np.random.Generator], list[dict]]] = {
    "next_sentence": next_sentence, "swapped_words": swapped_words, "cloze": cloze}


def build_task(name: str, n_items: int = 300, seed: int = 0, documents: list[list[str]] | None = None) -> list[dict]:
    """Up to `n_items` items of task `name`, drawn deterministically for `seed` (in corpus order)."""
    if name not in TASKS:
        raise PlmlabError(f"unknown built-in task {name!r}; choose one of {', '.join(TASKS)}")
    if n_items < 1:
        raise PlmlabError(f"n_items must be >= 1, got {n_items}")
    rng = np.random.default_rng([seed, list(TASKS).index(name)])
    items = TASKS[name](validation_documents(documents), rng)
    if not items:
        raise PlmlabError(f"the validation documents give no {name} items")
    keep = np.sort(rng.permutation(len(items))[:n_items])
    return [items[i] for i in keep]


def chance(items: list[dict]) -> float:
    """The accuracy of guessing: the mean of 1 / number of choices."""
    return float(np.mean([1 / len(item["choices"]) for item in items]))
