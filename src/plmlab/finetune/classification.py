"""Sequence classification (a label per text or text pair) and token classification (a label
per word, e.g. NER), with a linear head on the pooled [CLS] or on every token (BERT paper,
section 4 and figure 4). Checkpoints load in transformers as *ForSequenceClassification /
*ForTokenClassification.

Data. classification: CSV or JSONL with `text`, optional `text_pair`, `label` (a string or an
integer). token-classification: JSONL with `tokens` (the words) and `labels` (one per word);
a word's label goes on its first sub-token and the others get -100, as in transformers.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import Config
from ..data.records import read_labelled_texts, read_tagged_words
from ..errors import PlmlabError
from ..evaluate.labels import macro_f1
from ..masks import IGNORE_INDEX
from ..objectives.base import pad_and_stack
from ..families.fits import Fits
from .tasks import Task, register_task


class _Labelled(Task):
    """What both tasks share: the label set, padding, accuracy and macro-F1."""

    label_kind = "classifier kind"

    def label_set(self, train: list[dict]) -> list[str]:
        given = self.options.get("labels")
        if given:
            return [s.strip() for s in given.split(",") if s.strip()]
        names = sorted({label for r in train for label in self.record_labels(r)}, key=_label_order)
        if len(names) < 2:
            raise PlmlabError(f"the training data has {len(names)} distinct label(s); classification needs two or more")
        return names

    def record_labels(self, record: dict) -> list[str]:
        raise NotImplementedError

    def model_config(self, base: Config, train: list[dict]) -> Config:
        if not Fits(arch="encoder").fits(base):
            raise PlmlabError(f"{self.name} fine-tuning needs an encoder model (BERT, RoBERTa, ALBERT), not {base.arch}")
        labels = self.label_set(train)
        config = base.replace(head="none", pair_head=False, classifier=self.label_kind, label_names=labels,
                              pooler=base.pooler or self.label_kind == "sequence")
        self.index = {name: i for i, name in enumerate(labels)}
        return config

    def label_id(self, record: dict, value: str) -> int:
        if value not in self.index:
            raise PlmlabError(f"{record['_where']}: unknown label {value!r} (labels: {', '.join(self.index)})")
        return self.index[value]

    def check_length(self, ids: list, record: dict, config: Config) -> int:
        limit = min(config.max_positions, self.options.get("max_length") or config.max_positions)
        if len(ids) > limit and not self.options.get("truncate"):
            raise PlmlabError(f"{record['_where']}: {len(ids)} tokens, more than the limit of {limit} "
                              "(pass --truncate to cut long inputs)")
        return limit

    def collate(self, examples) -> dict[str, torch.Tensor]:
        return pad_and_stack(examples, {"input_ids": self.pad_id, "labels": IGNORE_INDEX})

    @torch.no_grad()
    def score(self, model, batches) -> dict[str, float]:
        """Accuracy, macro-F1 and the training loss (`forward`'s) over the evaluation batches."""
        model.eval()
        preds, golds, losses = [], [], []
        for batch in batches:
            loss, out = self.forward(model, batch)
            losses.append(float(loss))
            pred, gold = self.predictions(out, batch)
            preds.append(pred)
            golds.append(gold)
        pred, gold = torch.cat(preds), torch.cat(golds)
        return {"accuracy": float((pred == gold).float().mean()),
                "macro_f1": macro_f1(pred, gold, len(self.index)), "loss": float(np.mean(losses))}

    def predictions(self, output, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted, gold) class ids of the labelled positions."""
        keep = batch["labels"] != IGNORE_INDEX
        return output.logits.argmax(-1)[keep], batch["labels"][keep]


def _label_order(name: str):
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


@register_task
class SequenceClassification(_Labelled):
    name = "classification"
    help = "a label per text or text pair (head on the pooled [CLS])"
    label_kind = "sequence"
    next_steps = ('plmlab classify --model {out} "a text to label"',
                  "plmlab evaluate --model {out} --task classification --data {eval}")

    def read(self, path: str) -> list[dict]:
        return read_labelled_texts(path)

    def record_labels(self, record: dict) -> list[str]:
        return [record["label"]]

    def encode(self, record, tokenizer, config) -> dict[str, np.ndarray]:
        if record["text_pair"] is not None:
            ids, types = tokenizer.encode_pair(record["text"], record["text_pair"])
            if config.type_vocab_size == 0 or max(types) >= max(config.type_vocab_size, 1):
                raise PlmlabError(f"{record['_where']}: a text pair, but the model has no token type for the "
                                  f"second segment (type_vocab_size={config.type_vocab_size})")
        else:
            ids = tokenizer.encode(record["text"])
            types = [0] * len(ids)
        limit = self.check_length(ids, record, config)
        if len(ids) > limit:  # --truncate: keep the closing special token
            ids, types = ids[: limit - 1] + ids[-1:], types[: limit - 1] + types[-1:]
        out = {"input_ids": np.asarray(ids), "attention_mask": np.ones(len(ids), dtype=np.int64),
               "labels": np.asarray(self.label_id(record, record["label"]))}
        if config.type_vocab_size:
            out["token_type_ids"] = np.asarray(types)
        return out


@register_task
class TokenClassification(_Labelled):
    name = "token-classification"
    help = "a label per word, e.g. named entities (head on every token)"
    label_kind = "token"
    next_steps = ('plmlab tag --model {out} "a sentence to tag"',
                  "plmlab evaluate --model {out} --task token-classification --data {eval}")

    def read(self, path: str) -> list[dict]:
        return read_tagged_words(path)

    def record_labels(self, record: dict) -> list[str]:
        return record["labels"]

    def encode(self, record, tokenizer, config) -> dict[str, np.ndarray]:
        enc = tokenizer.backend.encode(record["tokens"], is_pretokenized=True)
        ids, words = enc.ids, enc.word_ids
        limit = self.check_length(ids, record, config)
        if len(ids) > limit:
            ids, words = ids[: limit - 1] + ids[-1:], words[: limit - 1] + [None]
        labels, previous = [], None
        for w in words:  # the first piece of each word carries its label
            labels.append(self.label_id(record, record["labels"][w]) if w is not None and w != previous
                          else IGNORE_INDEX)
            previous = w
        out = {"input_ids": np.asarray(ids), "attention_mask": np.ones(len(ids), dtype=np.int64),
               "labels": np.asarray(labels)}
        if config.type_vocab_size:
            out["token_type_ids"] = np.zeros(len(ids), dtype=np.int64)
        return out
