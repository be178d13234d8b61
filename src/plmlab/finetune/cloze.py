"""`cloze`: GLM fine-tuning for classification as blank filling (Du et al. 2022, section 2.3,
following PET): a pattern turns the text into a cloze question with one [MASK], and a
verbalizer maps each label to the word(s) that fill it.

    pattern  "{text} It was [MASK]."      verbalizer  pos:great,neg:terrible

One example holds Part A once and every label's candidate as its own Part B block: `[sop]`
+ the verbalizer's tokens, all at the [MASK]'s position with block positions 1, 2, ...
Each block sees Part A and itself (causally), never another candidate:

    [CLS] text It was [M] . <eos> | [sop] great | [sop] terr ible
                                    `-- pos --'   `---- neg ----'

A candidate's score is the summed log-probability of its verbalizer tokens (multi-token
verbalizers work as GLM's autoregressive blanks do); the prediction is the best-scoring label.

Training loss, as the paper's (section 2.3): the candidates' scores are normalised against each
other, p(y | x) = softmax_y(score(v(y))), and the loss is the cross-entropy of the gold label
under it. The checkpoint stays a plain GLM with its LM head: `fill-blanks` runs on it.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from ..config import Config
from ..errors import PlmlabError
from ..families import family_of
from ..families.glm import GlmTokens, glm_positions, prepare
from ..masks import IGNORE_INDEX
from ..objectives.base import pad_and_stack
from .classification import SequenceClassification
from .tasks import register_task

DEFAULT_PATTERN = "{text} It was [MASK]."
DEFAULT_PAIR_PATTERN = "{text} ? [MASK], {text_pair}"


@register_task
class Cloze(SequenceClassification):
    name = "cloze"
    help = "GLM: a label per text as the word filling a [MASK] (--cloze-pattern, --verbalizer)"
    next_steps = ('plmlab fill-blanks --model {out} "a text to label. It was [MASK]."',)

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--cloze-pattern", metavar="TEXT",
                            help=f"cloze task: the question, with {{text}} (and {{text_pair}}) and one [MASK] "
                                 f"(default {DEFAULT_PATTERN!r})")
        parser.add_argument("--verbalizer", metavar="L:WORD,...",
                            help="cloze task: the word(s) for each label, e.g. pos:great,neg:terrible "
                                 "(default: the label names themselves)")

    def model_config(self, base: Config, train: list[dict]) -> Config:
        if not family_of(base).answers_as_blank or base.head != "lm":
            raise PlmlabError("cloze fine-tuning needs a GLM blank-infilling model (a decoder with an LM head and "
                              f"2-D positions), not a {base.arch} with {base.position} positions")
        self.labels = self.label_set(train)
        self.index = {name: i for i, name in enumerate(self.labels)}
        self.words = self._verbalizer(self.labels)
        return base

    def _verbalizer(self, labels: list[str]) -> dict[str, str]:
        given = self.options.get("verbalizer")
        if not given:
            return {label: label for label in labels}
        words = {}
        for item in given.split(","):
            label, sep, word = item.partition(":")
            if not sep or not word.strip():
                raise PlmlabError(f"invalid --verbalizer item {item!r}: expected LABEL:WORD")
            words[label.strip()] = word.strip()
        missing = [label for label in labels if label not in words]
        if missing:
            raise PlmlabError(f"--verbalizer has no word for label(s) {', '.join(missing)}")
        return words

    # --- examples -------------------------------------------------------------------------------
    def encode(self, record, tokenizer, config) -> dict[str, np.ndarray]:
        tok = GlmTokens.from_tokenizer(tokenizer)
        pattern = self.options.get("cloze_pattern") or (DEFAULT_PAIR_PATTERN if record["text_pair"] else DEFAULT_PATTERN)
        lead = " " if re.search(r"\s\[MASK\]", pattern) else ""  # the span carries the space before it
        choices = [tokenizer.encode(lead + self.words[label], add_special_tokens=False) for label in self.labels]
        text = record["text"]
        while True:
            part_a = [tok.cls] + prepare(tokenizer, self._fill(pattern, text, record)) + [tok.eos]
            total = len(part_a) + sum(len(c) + 1 for c in choices)
            limit = min(config.max_positions, self.options.get("max_length") or config.max_positions)
            if total <= limit:
                break
            words = text.split()
            if not self.options.get("truncate") or len(words) <= 1:
                raise PlmlabError(f"{record['_where']}: {total} tokens with the candidates, more than the limit of "
                                  f"{limit} (pass --truncate to cut long texts)")
            text = " ".join(words[: max(1, len(words) * limit // total)])
        masks = [i for i, t in enumerate(part_a) if t in tok.masks]
        if len(masks) != 1 or part_a[masks[0]] != tok.mask:
            raise PlmlabError(f"{record['_where']}: the cloze pattern must hold exactly one [MASK] (and no other "
                              "mask) after filling in the text")
        return build_choices(part_a, masks[0], choices, self.label_id(record, record["label"]), tok)

    @staticmethod
    def _fill(pattern: str, text: str, record: dict) -> str:
        try:
            return pattern.format(text=text, text_pair=record["text_pair"] or "")
        except (KeyError, IndexError, ValueError) as e:
            raise PlmlabError(f"invalid --cloze-pattern {pattern!r}: use {{text}} and {{text_pair}} only ({e})") from None

    # --- scoring ---------------------------------------------------------------------------------
    def forward(self, model, batch):
        """Cross-entropy of the gold label over the candidates' summed log-probabilities."""
        output = model(**batch)
        return candidate_loss(output.logits, batch), output

    def count_targets(self, batch) -> int:
        return int(batch["input_ids"].shape[0])  # the loss is a mean over examples

    def predictions(self, output, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(the best-scoring candidate, the gold one) of each example; the evaluation's loss is
        `forward`'s, the candidate-normalised one the training minimises."""
        return candidate_scores(output.logits, batch).argmax(-1), gold_choice(batch)


def build_choices(part_a: list[int], m: int, choices: list[list[int]], gold: int, tok: GlmTokens) -> dict:
    """Part A + one Part B block per candidate ([sop] + its tokens at the [MASK]'s position);
    labels on the gold candidate's tokens; blocks see Part A and themselves only."""
    n_a = len(part_a)
    ids, labels = list(part_a), [IGNORE_INDEX] * n_a
    starts = []
    for c, words in enumerate(choices):
        starts.append(len(ids))
        ids += [tok.sop] + words
        labels += (words + [IGNORE_INDEX]) if c == gold else [IGNORE_INDEX] * (len(words) + 1)
    T = len(ids)
    # 2-D positions as the objective lays them out: every candidate is a block at the [MASK]'s position
    positions = glm_positions(n_a, [(m, len(words) + 1) for words in choices])  # (2, T)
    mask = np.zeros((T, T), dtype=np.int8)
    mask[:, :n_a] = 1  # everyone sees Part A; Part A sees nothing else
    for s, e in zip(starts, starts[1:] + [T]):
        mask[s:e, s:e] = np.tril(np.ones((e - s, e - s), dtype=np.int8))  # causal within its own block
    return {"input_ids": np.asarray(ids), "labels": np.asarray(labels), "attention_mask": mask,
            "position_ids": positions}


def candidate_loss(logits: torch.Tensor, batch: dict) -> torch.Tensor:
    """The paper's loss: cross-entropy of the gold label under softmax over the candidates."""
    return torch.nn.functional.cross_entropy(candidate_scores(logits, batch), gold_choice(batch))


def candidate_scores(logits: torch.Tensor, batch: dict) -> torch.Tensor:
    """(B, C): each candidate's summed log-probability of its tokens (block positions >= 2)."""
    logp = logits.float().log_softmax(-1)  # (B, T, V)
    ids, block = batch["input_ids"], batch["position_ids"][:, 1]  # (B, T)
    token_logp = logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]  # log p(ids[t] | ..., t-1): (B, T-1)
    is_word = block[:, 1:] >= 2  # a verbalizer token (not [sop], not Part A, not padding)
    choice = (block == 1).long().cumsum(-1)[:, 1:] - 1  # (B, T-1) which candidate a token is in
    n_choices = int((block == 1).sum(-1).max())
    scores = torch.zeros(ids.shape[0], n_choices, device=logits.device)
    return scores.scatter_add(1, choice.clamp(min=0) * is_word, token_logp * is_word)


def gold_choice(batch: dict) -> torch.Tensor:
    """(B,): the candidate whose tokens carry the labels."""
    block = batch["position_ids"][:, 1]
    choice = (block == 1).long().cumsum(-1) - 1
    labelled = batch["labels"] != IGNORE_INDEX
    return torch.where(labelled, choice, -1).amax(-1)
