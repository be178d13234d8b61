"""text-classification and token-classification: a fine-tuned classifier's labels, by name.

The label names are the checkpoint's own (`Config.label_names`, read from config.json's
id2label, which `plmlab finetune` writes). A word's label is read from its first sub-token, the
one fine-tuning trains (plmlab.finetune.classification), and consecutive words of one label --
or a B-X followed by I-X, in IOB tagging -- make one entity.
"""

from __future__ import annotations

import re

import torch

from ..errors import PlmlabError
from .base import Pipeline
from .loading import check_text, model_device


def _check_classifier(model, kind: str, task: str) -> None:
    if getattr(model.config, "classifier", "none") != kind:
        have = model.config.classifier if model.config.classifier != "none" else "no classifier head"
        raise PlmlabError(f"{task} needs a model fine-tuned with `plmlab finetune --task "
                          f"{'classification' if kind == 'sequence' else 'token-classification'}`; this one has {have}")


@torch.no_grad()
def _logits(model, ids: list[int], types: list[int]) -> torch.Tensor:
    device = model_device(model)
    input_ids = torch.tensor([ids], device=device)  # (1, T)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    if model.config.type_vocab_size:
        inputs["token_type_ids"] = torch.tensor([types], device=device)  # (1, T)
    return model(**inputs).logits[0].float()  # (C,) or (T, C)


def _fit(ids: list, types: list, limit: int, truncate: bool, what: str) -> tuple[list, list]:
    if len(ids) <= limit:
        return ids, types
    if not truncate:
        raise PlmlabError(f"the {what} has {len(ids)} tokens, more than the model's {limit} positions "
                          "(shorten it or truncate it: truncate=True, --truncate)")
    return ids[: limit - 1] + ids[-1:], types[: limit - 1] + types[-1:]  # keep the closing special token


class TextClassification(Pipeline):
    """A text (or {"text", "text_pair"}) -> {"text", "label", "score", "scores": {label: probability}}."""

    task = "text-classification"
    defaults = dict(truncate=False)

    def check(self, model) -> None:
        _check_classifier(model, "sequence", self.task)

    def run(self, texts: list, truncate: bool) -> list[dict]:
        return [self._one(t, truncate) for t in texts]

    def _one(self, item, truncate: bool) -> dict:
        text, pair = (item.get("text"), item.get("text_pair")) if isinstance(item, dict) else (item, None)
        if pair is None:
            ids = self.tokenizer.encode(check_text(text))
            types = [0] * len(ids)
        else:
            ids, types = self.tokenizer.encode_pair(check_text(text), check_text(pair, "text pair"))
        ids, types = _fit(ids, types, self.model.config.max_positions, truncate, "text")
        probs = _logits(self.model, ids, types).softmax(-1)  # (C,)
        names = self.model.config.label_names
        best = int(probs.argmax())
        result = {"text": text, "label": names[best], "score": float(probs[best]),
                  "scores": dict(zip(names, probs.tolist()))}
        if pair is not None:
            result["text_pair"] = pair
        return result


class TokenClassification(Pipeline):
    """A text (split at whitespace into words), {"text"} or {"tokens": [words]} -> {"text", "words":
    [{word, label, score, start, end}], "entities": [{label, text, start, end, words}]}.
    `start`/`end` are character offsets into the text (given tokens: into " ".join(tokens))."""

    task = "token-classification"
    defaults = dict(truncate=False, ignore_labels=("O",))

    def check(self, model) -> None:
        _check_classifier(model, "token", self.task)

    def run(self, texts: list, truncate: bool, ignore_labels) -> list[dict]:
        ignore = {ignore_labels} if isinstance(ignore_labels, str) else set(ignore_labels or ())
        return [self._one(t, truncate, ignore) for t in texts]

    def _one(self, item, truncate: bool, ignore: set) -> dict:
        given = isinstance(item, dict) and "tokens" in item
        if given:
            if not isinstance(item["tokens"], list):
                raise PlmlabError(f"'tokens' must be a list of words, got {type(item['tokens']).__name__}")
            words = [check_text(str(w), "word") for w in item["tokens"]]
            text, spans = " ".join(words), _joined_spans(words)
        else:
            text = check_text(item.get("text") if isinstance(item, dict) else item)
            found = list(re.finditer(r"\S+", text))
            words, spans = [m.group() for m in found], [m.span() for m in found]
        if not words:
            raise PlmlabError("nothing to tag: the text has no words")
        enc = self.tokenizer.backend.encode(words, is_pretokenized=True)
        ids, word_of = _fit(enc.ids, enc.word_ids, self.model.config.max_positions, truncate, "text")
        word_of = word_of[:-1] + [None] if len(ids) < len(enc.ids) else word_of  # the kept closing token
        probs = _logits(self.model, ids, [0] * len(ids)).softmax(-1)  # (T, C)
        names = self.model.config.label_names
        tagged, seen = [], set()
        for t, w in enumerate(word_of):  # the first piece of each word carries its label
            if w is None or w in seen:
                continue
            seen.add(w)
            best = int(probs[t].argmax())
            tagged.append({"word": words[w], "label": names[best], "score": float(probs[t, best]),
                           "start": spans[w][0], "end": spans[w][1]})
        result = {"text": text, "words": tagged, "entities": group_entities(tagged, text, ignore)}
        if given:
            result["tokens"] = words
        return result


def group_entities(words: list[dict], text: str, ignore: set) -> list[dict]:
    """Runs of words with one label (IOB: B-X I-X ... is one X) -> entities; `ignore`d labels skipped."""
    entities: list[dict] = []
    previous = None
    for w in words:
        label = w["label"]
        if label in ignore:
            previous = None
            continue
        prefix, kind = (label[:2], label[2:]) if label[:2] in ("B-", "I-") else ("", label)
        current = entities[-1] if entities else None
        if current is not None and previous == kind and prefix != "B-":
            current["end"] = w["end"]
            current["words"].append(w["word"])
        else:
            entities.append({"label": kind, "start": w["start"], "end": w["end"], "words": [w["word"]]})
        previous = kind
    for e in entities:
        e["text"] = text[e["start"]:e["end"]]
    return entities


def _joined_spans(words: list[str]) -> list[tuple[int, int]]:
    """Character spans of the words in " ".join(words) (given tokens may hold spaces themselves)."""
    spans, at = [], 0
    for w in words:
        spans.append((at, at + len(w)))
        at += len(w) + 1
    return spans
