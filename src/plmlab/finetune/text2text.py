"""Text-to-text fine-tuning of an encoder-decoder (T5, Raffel et al. 2020, section 2.4): every
task -- translation, summarisation, classification -- maps an input text to a target text.

    plmlab finetune --model DIR --task text2text --train train.jsonl --eval dev.jsonl \\
        --prefix "sst2 sentence: " --out run/

Data: JSONL (or CSV) records with `input` and `target`. The encoder reads prefix + input + </s>;
the decoder learns target + </s> (teacher forcing from the start token). Evaluation decodes
greedily (or with --num-beams) and reports exact match on token ids. When the targets are
labels -- a small closed set of words, as for classification -- it also reports accuracy
and the share of predictions that are no label at all (the paper counts those as wrong).
The prefix is stored in the checkpoint's config notes, so generation can reuse it.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import Config
from ..data.records import read_text_pairs
from ..errors import PlmlabError
from ..generation import generate
from ..masks import IGNORE_INDEX
from ..objectives.base import pad_and_stack
from ..families.fits import Fits
from ..objectives.mixture import encode_text2text
from .tasks import Task, register_task

MAX_LABELS = 20  # at most this many distinct training targets, each seen twice on average: labels


@register_task
class Text2Text(Task):
    name = "text2text"
    help = "encoder-decoder input -> target text (T5): exact match, accuracy for label targets"
    next_steps = ('plmlab generate --model {out} "{prefix}an input text"',)
    base_lr = 3e-4  # at width 768: transformers' T5 docs for AdamW ("1e-4 and 3e-4 work well"); 9e-4 for t5-mini

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--prefix", default="", metavar="TEXT",
                            help='text2text: task prefix put before every input, e.g. "summarize: "')
        parser.add_argument("--max-target-length", type=int, metavar="N",
                            help="text2text: maximum target tokens, </s> included (default: 128, or the "
                                 "decoder's context less its start token where that is smaller: BART's)")
        parser.add_argument("--num-beams", type=int, default=1, metavar="K",
                            help="text2text: beams when decoding the evaluation set (1: greedy)")

    def read(self, path: str) -> list[dict]:
        return [{"input": source, "target": target, "_where": f"{path}:{line}"}
                for line, source, target in read_text_pairs(path)]

    def model_config(self, base: Config, train: list[dict]) -> Config:
        if not Fits(arch="encoder-decoder", head="lm").fits(base):
            raise PlmlabError(f"text2text fine-tuning needs an encoder-decoder with an LM head (T5), not {base.arch}")
        targets = [r["target"].strip() for r in train]
        distinct = sorted(set(targets))
        self.labels = distinct if len(distinct) <= MAX_LABELS and 2 * len(distinct) <= len(targets) else None
        self.label_ids: set[tuple[int, ...]] = set()
        prefix = self.options.get("prefix") or ""
        return base.replace(notes={**base.notes, "text2text_prefix": prefix})

    def _limits(self, config: Config) -> tuple[int, int]:
        max_input = min(config.max_positions, self.options.get("max_length") or config.max_positions)
        # 128 target tokens, or what a decoder with a fixed context (BART's learned positions) has
        # after its start token
        max_target = self.options.get("max_target_length") or min(128, config.max_positions - 1)
        if max_target < 2:
            raise PlmlabError(f"--max-target-length must be at least 2 (a token and </s>), got {max_target}")
        return max_input, max_target

    def encode(self, record: dict, tokenizer, config: Config) -> dict[str, np.ndarray]:
        max_input, max_target = self._limits(config)
        example = encode_text2text(tokenizer, [(record["input"], record["target"])], self.options.get("prefix") or "",
                                   max_input, max_target, bool(self.options.get("truncate")),
                                   names=[record["_where"]])[0]
        if self.labels is not None and not self.label_ids:
            self.label_ids = {tuple(ids) for ids in tokenizer.encode_batch(self.labels)}
        self.eos = tokenizer.eos_id
        return example

    def collate(self, examples) -> dict[str, torch.Tensor]:
        keys = ("input_ids", "attention_mask", "labels")
        return pad_and_stack([{k: e[k] for k in keys} for e in examples],
                             {"input_ids": self.pad_id, "labels": IGNORE_INDEX})

    @torch.no_grad()
    def score(self, model, batches) -> dict[str, float]:
        model.eval()
        losses, hits, valid, total = [], 0, 0, 0
        beams = self.options.get("num_beams") or 1
        _, max_target = self._limits(model.config)
        for batch in batches:
            losses.append(float(model(**batch).loss))
            predicted = generate(model, batch["input_ids"], attention_mask=batch["attention_mask"],
                                 max_new_tokens=max_target, num_beams=beams, eos_token_id=self.eos)
            for pred, gold in zip(predicted.tolist(), batch["labels"].tolist()):
                pred, gold = _until_eos(pred, self.eos), _until_eos([t for t in gold if t != IGNORE_INDEX], self.eos)
                hits += pred == gold
                valid += tuple(pred) in self.label_ids
                total += 1
        scores = {"exact_match": hits / total}
        if self.labels is not None:
            scores = {"accuracy": hits / total, **scores, "invalid_predictions": 1 - valid / total}
        return {**scores, "loss": float(np.mean(losses))}


def _until_eos(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos)] if eos in ids else ids
