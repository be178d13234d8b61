"""MLM masking: which tokens an MLM example selects and how it corrupts them.

Selection (Devlin et al. 2019, section 3.1 and the original `create_pretraining_data.py`):
`round(mask_prob * n)` of the n candidate tokens (never a special token, never padding), at
least one. Units of selection:

  tokens       each token alone (BERT's default)
  whole words  a word's pieces go together: a WordPiece head and its `##` pieces, a byte-level
               BPE token starting with "Ġ" and what follows, a Unigram "▁" piece and what
               follows (`whole_word=True`)
  n-grams      ALBERT (Lan et al. 2020, section 4.1): n consecutive units, n <= `ngram`, with
               p(n) proportional to 1/n (`ngram=3`)

Each span is drawn as: sample n, then a uniformly random place among those where n free,
adjacent units fit in the remaining budget (shorter n when none does). ALBERT's script instead
shuffles start positions and skips overlapping candidates, which slightly favours short
n-grams; drawing the place after the length keeps p(n) exact. A unit never crosses a special
token, so a span never straddles [SEP].

Replacement of each selected token (section 3.1): 80 % [MASK], 10 % a random token (uniform
over the non-special vocabulary), 10 % unchanged (`replace_probs`). Labels hold the original
id at selected positions and -100 elsewhere.

Other maskings (`masking=`, mlm.py's `make_masker`) are `UnitMasker`s, one replacement draw per unit:
`macbert` (objectives/macbert.py: whole-word n-grams, similar words, never [MASK]) and
`phrase` / `entity` (objectives/knowledge_masking.py: ERNIE 1.0's phrases and entities as units)
and `staged` (the same file: basic, then phrase, then entity masking as a run goes on).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PlmlabError
from ..masks import IGNORE_INDEX
from .options import ObjectiveOptions, option

# Lead characters of word-initial tokens per tokenizer model; WordPiece marks the opposite.
_WORD_START_PREFIX = {"BPE": "Ġ", "Unigram": "▁"}


# dynamic / static: basic masking (Masker); the others choose their own masker (make_masker)
MASKINGS = ("static", "dynamic", "macbert", "phrase", "entity", "staged")
DEFAULT_STAGES = (1 / 3, 2 / 3)  # staged: phrase-level from a third of the run, entity-level from two thirds


@dataclass
class Masking(ObjectiveOptions):
    """The masking options (of every MLM objective; `Masker` reads them)."""

    mask_prob: float = option(0.15, float, "MLM: share of tokens selected", low=0, high=1, open_high=True,
                              flag="--mask-prob", metavar="P")
    replace_probs: tuple[float, float, float] = option((0.8, 0.1, 0.1), tuple,
                                                       "MLM: shares of [MASK], random and unchanged selected tokens")
    whole_word: bool = option(False, bool, "MLM: mask whole words", flag="--whole-word")
    ngram: int = option(1, int, "MLM: mask n-grams of up to N units (ALBERT: 3)", low=1, high=10,
                        flag="--ngram", metavar="N")

    def __post_init__(self) -> None:
        self.replace_probs = tuple(float(p) for p in self.replace_probs)
        if not 0.0 <= self.mask_prob < 1.0:
            raise PlmlabError(f"mask_prob must be in [0, 1), got {self.mask_prob}")
        if len(self.replace_probs) != 3 or min(self.replace_probs) < 0 or abs(sum(self.replace_probs) - 1) > 1e-6:
            raise PlmlabError(f"replace_probs must be three probabilities summing to 1, got {self.replace_probs}")
        if not 1 <= int(self.ngram) <= 10:
            raise PlmlabError(f"ngram must be between 1 and 10, got {self.ngram}")


class Masker:
    """Selects and corrupts tokens of one example; pure given the generator."""

    def __init__(self, tokenizer, options: Masking) -> None:
        self.options = options
        self.mask_id = tokenizer.mask_id
        if self.mask_id is None:
            raise PlmlabError(f"the tokenizer ({tokenizer.style}) has no mask token; MLM needs one")
        special = set(tokenizer.special_ids.values()) | set(tokenizer.sentinel_ids)
        self.special = np.array(sorted(special), dtype=np.int64)
        vocab = np.arange(tokenizer.vocab_size)
        self.random_pool = vocab[~np.isin(vocab, self.special)]  # replacement tokens
        self.word_start = word_start_table(tokenizer)
        n = np.arange(1, options.ngram + 1)
        self.ngram_p = (1.0 / n) / (1.0 / n).sum()  # ALBERT: p(n) proportional to 1/n

    def candidates(self, ids: np.ndarray) -> np.ndarray:
        """Boolean [T]: tokens that may be selected (not special, hence not padding)."""
        return ~np.isin(ids, self.special)

    def select(self, ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
        """(sorted selected positions, the length in units of each span, in draw order)."""
        cand = np.flatnonzero(self.candidates(ids))
        budget = int(round(len(cand) * self.options.mask_prob))
        if len(cand) and self.options.mask_prob > 0:
            budget = max(1, budget)
        if budget == 0:
            return np.zeros(0, dtype=np.int64), []
        if not self.options.whole_word and self.options.ngram == 1:  # plain BERT: a uniform subset
            return np.sort(rng.choice(cand, size=budget, replace=False)), [1] * budget
        return self._select_spans(ids, cand, budget, rng)

    def _select_spans(self, ids, cand, budget, rng) -> tuple[np.ndarray, list[int]]:
        starts, ends, spans = self.cover(ids, cand, budget, rng)
        return np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]), spans

    def cover(self, ids, cand, budget, rng, per_unit: bool = False):
        """(starts, ends) of the selected units and the span lengths in units, in draw order.

        A unit takes its tokens from the budget, or 1 with `per_unit` (a budget counted in
        words, as MacBERT's "15 % of the words")."""
        starts, ends = self.units(ids, cand)  # unit u = positions [starts[u], ends[u])
        lengths = np.ones_like(starts) if per_unit else ends - starts  # what each unit costs
        adjacent = np.append(starts[1:] == ends[:-1], False)  # unit u runs on into u + 1
        covered = np.zeros(len(starts), dtype=bool)
        remaining, spans = budget, []
        while remaining > 0:
            n = int(rng.choice(len(self.ngram_p), p=self.ngram_p)) + 1
            placed = self._place(n, lengths, adjacent, covered, remaining, rng)
            if placed is None:
                break  # nothing free fits the remaining budget (whole words only)
            u, m = placed
            covered[u : u + m] = True
            remaining -= int(lengths[u : u + m].sum())
            spans.append(m)
        return starts[covered], ends[covered], spans

    @staticmethod
    def _place(n, lengths, adjacent, covered, remaining, rng) -> tuple[int, int] | None:
        """A random start of m <= n free adjacent units within the budget (largest m first)."""
        U = len(lengths)
        for m in range(min(n, U), 0, -1):
            free = _window_sums(covered, m) == 0  # (U - m + 1,) no unit of the window taken
            fits = _window_sums(lengths, m) <= remaining
            joined = _window_sums(adjacent[:-1], m - 1) == m - 1 if m > 1 else True  # no gap inside
            valid = np.flatnonzero(free & fits & joined)
            if len(valid):
                return int(rng.choice(valid)), m
        return None

    def units(self, ids: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start and end positions of the selection units among the candidate positions."""
        if not self.options.whole_word:
            return cand, cand + 1
        return self.word_units(ids, cand)

    def word_units(self, ids: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start and end positions of the whole words among the candidate positions."""
        prev_is_cand = np.isin(cand - 1, cand)  # a word never continues across a special token
        new_unit = self.word_start[ids[cand]] | ~prev_is_cand
        starts = cand[new_unit]
        unit_of = np.cumsum(new_unit) - 1  # the unit of each candidate
        ends = np.zeros(len(starts), dtype=np.int64)
        np.maximum.at(ends, unit_of, cand + 1)
        return starts, ends

    def corrupt(self, ids: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """input_ids, labels and, for `describe`, what happened at each selected position."""
        ids = np.asarray(ids, dtype=np.int64)
        chosen, spans = self.select(ids, rng)
        p_mask, p_random, _ = self.options.replace_probs
        u = rng.random(len(chosen))
        how = np.where(u < p_mask, 0, np.where(u < p_mask + p_random, 1, 2))  # 0 mask, 1 random, 2 keep
        inputs, labels = ids.copy(), np.full_like(ids, IGNORE_INDEX)
        labels[chosen] = ids[chosen]
        inputs[chosen[how == 0]] = self.mask_id
        inputs[chosen[how == 1]] = rng.choice(self.random_pool, size=int((how == 1).sum()))
        return {"input_ids": inputs, "labels": labels, "masked_positions": chosen, "replacement": how,
                "spans": np.asarray(spans, dtype=np.int64)}

    def kind(self, original: int, now: int) -> str:
        """What happened to a selected token, as far as the input shows (`plmlab objective`)."""
        return "mask" if now == self.mask_id else "unchanged" if now == original else "random"

    def attach_model(self, model) -> None:
        """Basic masking reads no model (MacBERT's similar words may)."""

    def follow_steps(self, step_of, max_steps: int) -> None:
        """Only staged masking depends on the step (knowledge_masking.StagedMasker)."""

    def view(self, ids: np.ndarray) -> dict:
        """Extra fields of the `plmlab objective` view (ERNIE: the phrases / entities found)."""
        return {}


class UnitMasker(Masker):
    """Whole units (words, phrases, entities) with one replacement decision per unit.

    ERNIE 1.0 (section 3.2) masks "all the basic units in the same phrase" together; MacBERT
    (section 3.3) picks a similar word per word. `replace` applies the decisions: here
    0 = [MASK] over the unit, 1 = random tokens, 2 = kept (ERNIE); MacBERT overrides it.
    """

    per_unit_budget = False  # the budget counts tokens (BERT's 15 %); True: units (MacBERT's words)

    def units(self, ids: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.word_units(ids, cand)  # whole words at least, whatever whole_word says

    def select(self, ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
        starts, ends, spans = self.select_units(ids, rng)
        chosen = [np.arange(s, e) for s, e in zip(starts, ends)]
        return (np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)), spans

    def select_units(self, ids: np.ndarray, rng: np.random.Generator):
        cand = np.flatnonzero(self.candidates(ids))
        total = len(self.units(ids, cand)[0]) if self.per_unit_budget else len(cand)
        budget = int(round(total * self.options.mask_prob))
        if total and self.options.mask_prob > 0:
            budget = max(1, budget)
        if budget == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), []
        return self.cover(ids, cand, budget, rng, self.per_unit_budget)

    def corrupt(self, ids, rng: np.random.Generator) -> dict[str, np.ndarray]:
        ids = np.asarray(ids, dtype=np.int64)
        starts, ends, spans = self.select_units(ids, rng)
        p0, p1, _ = self.options.replace_probs
        u = rng.random(len(starts))  # one draw per unit
        how = np.where(u < p0, 0, np.where(u < p0 + p1, 1, 2))  # (U,)
        inputs, labels = ids.copy(), np.full_like(ids, IGNORE_INDEX)
        how = self.replace(inputs, list(zip(starts.tolist(), ends.tolist())), how, rng)
        # units come in position order, so their tokens do too
        chosen = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if len(starts) else starts
        labels[chosen] = ids[chosen]
        return {"input_ids": inputs, "labels": labels, "masked_positions": chosen,
                "replacement": np.repeat(how, ends - starts),  # (n_selected,) each unit's decision on its tokens
                "spans": np.asarray(spans, dtype=np.int64),
                "units": np.stack([starts, ends], axis=1) if len(starts) else np.zeros((0, 2), dtype=np.int64)}

    def replace(self, inputs: np.ndarray, units: list[tuple[int, int]], how: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
        for (s, e), h in zip(units, how):
            if h == 0:
                inputs[s:e] = self.mask_id
            elif h == 1:
                inputs[s:e] = rng.choice(self.random_pool, size=e - s)
        return how


def _window_sums(values: np.ndarray, m: int) -> np.ndarray:
    """Sums of every window of m consecutive values: [len(values) - m + 1]."""
    c = np.concatenate(([0], np.cumsum(values, dtype=np.int64)))
    return c[m:] - c[:-m]


def word_start_table(tokenizer) -> np.ndarray:
    """Boolean [vocab]: True where a token begins a word (see the module docstring)."""
    kind = type(tokenizer.backend.model).__name__
    tokens = tokenizer.convert_ids_to_tokens(range(tokenizer.vocab_size))
    if kind == "WordPiece":
        return np.array([not (t or "").startswith("##") for t in tokens])
    prefix = _WORD_START_PREFIX.get(kind)
    if prefix is None:
        return np.ones(len(tokens), dtype=bool)  # unknown scheme: every token is a word
    return np.array([(t or "").startswith(prefix) for t in tokens])
