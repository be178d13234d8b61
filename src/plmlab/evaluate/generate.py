"""Generation scoring: greedy decoding of each context until EOS or a newline, scored against
its answer by exact match and token F1 as SQuAD v1.1's official script defines them
(`normalize_answer`: lowercase, drop punctuation, drop the articles a / an / the, collapse
whitespace; F1 over the multiset of normalised words). Items: {"context": str, "answer": str}
(or a list of acceptable answers: the best one counts, as SQuAD takes the max over golds).

A 2-D-position GLM (the original GLM, ChatGLM-6B) answers as the blank after the context
(``context [gMASK] | <sop> answer``, plmlab.infill.answer_blank): the layout SFT trains, so on the
chat-rendered items `plmlab sft` writes its predictions are `plmlab chat`'s greedy replies."""

from __future__ import annotations

import re
import string
import time
from collections import Counter

from ..errors import PlmlabError
from ..families import family_of
from ..families.glm import text_prompt
from ..infill import answer_blank
from ..pipelines import TextGeneration
from .choice_items import read_jsonl, text_field
from .result import EvalResult

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answer: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(answer))


def token_f1(prediction: str, answer: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    if not pred or not gold:  # SQuAD 2.0's rule: both empty is a match, one empty is not
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def read_generate_items(path) -> list[dict]:
    """Validated {"context": str, "answer": str or [str, ...]} items of a JSONL file."""
    items = []
    for where, obj in read_jsonl(path):
        context = text_field(obj, "context", where)
        answer = obj.get("answer")
        answers = [answer] if isinstance(answer, str) else answer
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise PlmlabError(f"{where}: 'answer' must be a string (or a list of strings)"
                              + ("" if "answer" in obj else " (the line has no 'answer')"))
        items.append({"context": context, "answer": answer})
    return items


def evaluate_generate(model, tokenizer, items: list[dict], max_new_tokens: int = 32,
                      batch_size: int = 16) -> EvalResult:
    """Greedy continuations (see the module docstring); metrics exact_match, f1, n, items_per_s."""
    if not items:
        raise PlmlabError("no generation items to evaluate")
    if batch_size < 1:
        raise PlmlabError(f"batch_size must be >= 1, got {batch_size}")
    start = time.perf_counter()
    if family_of(model.config).answers_as_blank:  # a 2-D GLM: the blank after the context, as SFT trains it
        texts = [answer_blank(model, tokenizer, *text_prompt(tokenizer, item["context"]),
                              max_new_tokens=max_new_tokens, stop=("\n",)).text for item in items]
    else:
        generator = TextGeneration(model, tokenizer, max_new_tokens=max_new_tokens, do_sample=False, stop=("\n",))
        texts = []
        for at in range(0, len(items), batch_size):
            texts += [out["text"] for out in generator([item["context"] for item in items[at:at + batch_size]])]
    seconds = time.perf_counter() - start
    records = []
    for i, (item, text) in enumerate(zip(items, texts)):
        golds = [item["answer"]] if isinstance(item["answer"], str) else item["answer"]
        prediction = text.strip()
        records.append({"index": i, "prediction": prediction, "answer": item["answer"],
                        "exact_match": max(exact_match(prediction, g) for g in golds),
                        "f1": max(token_f1(prediction, g) for g in golds)})
    n = len(records)
    metrics = {"exact_match": sum(r["exact_match"] for r in records) / n, "f1": sum(r["f1"] for r in records) / n,
               "n": n, "seconds": round(seconds, 4), "items_per_s": n / max(seconds, 1e-9)}
    return EvalResult("generate", metrics, records)
