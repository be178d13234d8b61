"""Masked language modelling (BERT, RoBERTa, ALBERT): selection, replacement, the objective.

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

Other maskings (`masking=`, `make_masker`) are `UnitMasker`s, one replacement draw per unit:
`macbert` (objectives/macbert.py: whole-word n-grams, similar words, never [MASK]) and
`phrase` / `entity` (objectives/knowledge_masking.py: ERNIE 1.0's phrases and entities as units)
and `staged` (the same file: basic, then phrase, then entity masking as a run goes on).

XLM's MLM (Lample & Conneau 2019, section 3.2) is the packed formats (full-sentences,
doc-sentences) with language embeddings: on a corpus that names each document's language
(data/languages.py) every token gets its document's `language_ids`; [CLS] / <s> takes the first
piece's language, a separator and the closing token the language of the piece they close.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import PlmlabError
from ..masks import IGNORE_INDEX
from .base import Objective
from .fits import Fits
from .languages import LanguageIds, check_languages, lang_option, languages_option
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


@dataclass
class MlmOptions(Masking):
    """Masking plus how examples are made: static or dynamic masks, RoBERTa's input formats."""

    nullable = frozenset({"input_format", "similar_words", "lexicon", "stage_at", "languages", "lang"})
    masking: str = option("dynamic", str, "MLM masking: dynamic (a new mask every epoch, RoBERTa), static (BERT), "
                          "macbert (similar words, no [MASK]), phrase or entity (ERNIE 1.0 knowledge masking), "
                          "staged (ERNIE 1.0's basic, then phrase, then entity masking over one run)",
                          choices=MASKINGS, flag="--masking")
    static_copies: int = option(10, int, "static masking: distinct masks per example", low=1,
                                flag="--static-copies", metavar="N")
    input_format: str | None = option(None, str, "encoder input format: full-sentences | doc-sentences | "
                                      "segment-pair | sentence-pair", flag="--input-format", metavar="FORMAT")
    short_seq_prob: float = option(0.1, float, "pair formats: share of shorter target lengths", low=0, high=1)
    # --- MacBERT (objectives/macbert.py) and ERNIE 1.0 (objectives/knowledge_masking.py) ---
    similar_words: str | None = option(None, str, "macbert: a plain-text vectors file (WORD V1 ... VD per line) "
                                       "whose cosine neighbours are the similar words (default: the model's "
                                       "input embeddings)", flag="--similar-words", metavar="FILE")
    similar_top_k: int = option(10, int, "macbert: similar words are among the K nearest", low=1, metavar="K")
    similar_refresh: int = option(0, int, "macbert without --similar-words: recompute the neighbours of the "
                                  "model's embeddings every N examples (0: once, at the first)", low=0, metavar="N")
    lexicon: str | None = option(None, str, "phrase / entity / staged masking: a text file of phrases or entities, "
                                 "one a line (default: the built-in chunker)", flag="--lexicon", metavar="FILE")
    # --- ERNIE 1.0's stages in one run (objectives/knowledge_masking.py StagedMasker) ---
    stages: tuple[float, float] = option(DEFAULT_STAGES, tuple, "staged masking: the fractions of the run's steps "
                                         "where phrase-level, then entity-level masking begin (default thirds)")
    stage_at: float | None = option(None, float, "staged masking, plmlab objective's view only: show the masking "
                                    "of this fraction of the run (default 0: basic)", low=0, high=1)
    # --- XLM (objectives/languages.py) ---
    languages: list | None = languages_option()
    lang: str | None = lang_option()

    def __post_init__(self) -> None:
        super().__post_init__()
        check_languages("mlm", self.languages)
        if self.lexicon is not None and self.masking not in ("phrase", "entity", "staged"):
            raise PlmlabError(f"lexicon is for masking=phrase or entity (or staged), not {self.masking}")
        self.stages = tuple(float(b) for b in self.stages)
        if len(self.stages) != 2 or not 0 <= self.stages[0] <= self.stages[1] <= 1:
            raise PlmlabError(f"stages must be two fractions 0 <= a <= b <= 1 (phrase from a, entity from b), "
                              f"got {list(self.stages)}")
        if self.masking != "staged" and (self.stage_at is not None or self.stages != DEFAULT_STAGES):
            raise PlmlabError(f"stages and stage_at are for masking=staged, not {self.masking}")
        if self.similar_words is not None and self.masking != "macbert":
            raise PlmlabError(f"similar_words is for masking=macbert, not {self.masking}")
        for what, path in (("similar-words file", self.similar_words), ("lexicon", self.lexicon)):
            if path is not None and not os.path.isfile(path):  # before any tokenizer is trained
                raise PlmlabError(f"cannot read the {what} {path}: no such file")


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


def make_masker(tokenizer, options: Masking) -> Masker:
    """The masker of `options.masking` (MlmOptions; plain `Masking` options: basic masking)."""
    method = getattr(options, "masking", "dynamic")
    if method == "macbert":
        from .macbert import MacbertMasker

        return MacbertMasker(tokenizer, options)
    if method in ("phrase", "entity"):
        from .knowledge_masking import KnowledgeMasker

        return KnowledgeMasker(tokenizer, options)
    if method == "staged":
        from .knowledge_masking import StagedMasker

        return StagedMasker(tokenizer, options)
    return Masker(tokenizer, options)


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


# --- the objective -----------------------------------------------------------------------------
# the input formats whose examples are pieces of documents in order: where each token's language is known
PACKED_FORMATS = ("full-sentences", "doc-sentences")


def packed_languages(template, lengths: list[int], languages: np.ndarray) -> np.ndarray:
    """Language id of every token of `template.wrap(pieces)` (pairs.py), given each piece's length
    and language: prefix, piece 1, [separator, piece 2, ...], suffix (see the module docstring)."""
    parts = [np.full(len(template.prefix), languages[0])]
    for k, (n, lang) in enumerate(zip(lengths, languages)):
        if k and template.separator is not None:
            parts.append(languages[k - 1 : k])  # the separator closes the piece before it
        parts.append(np.full(n, lang))
    parts.append(np.full(len(template.suffix), languages[-1]))
    return np.concatenate(parts).astype(np.int64)  # (T,)


class MaskedLM(LanguageIds, Objective):
    """MLM on RoBERTa's input formats (see `pairs.py`); `mlm+nsp` / `mlm+sop` subclass it.

    Options (`MlmOptions`): mask_prob, replace_probs, whole_word, ngram (above);
    masking="dynamic" | "static" and static_copies (a static example is a pure function of
    (seed, index, epoch % copies), as BERT's data duplicated 10 times), or "macbert" (with
    similar_words, similar_top_k, similar_refresh) or "phrase" | "entity" (with lexicon), or
    "staged" (with lexicon, stages, stage_at), all dynamic; input_format; short_seq_prob (pair formats).
    """

    name = "mlm"
    tokenizer_style = "roberta"
    Options = MlmOptions
    fits = Fits(arch="encoder", head=("mlm", "lm"))  # "lm": XLM's tied pred_layer on an encoder
    demo = "fill-mask"
    relation = "nsp"  # what the pair formats predict: "nsp" or "sop"
    default_format = "full-sentences"
    formats = ("full-sentences", "doc-sentences", "segment-pair", "sentence-pair")
    pad_values = {**Objective.pad_values, **LanguageIds.pad_language}

    def __init__(self, tokenizer, seq_len: int, **options) -> None:
        super().__init__(tokenizer, seq_len, **options)
        self.init_languages()
        from .pairs import make_layout  # the formats live in pairs.py

        self.masking = self.opts  # MlmOptions is a Masking: what the Masker reads
        self.masker = make_masker(tokenizer, self.masking)
        self.static_copies = self.opts.static_copies if self.opts.masking == "static" else None
        self.layout = make_layout(self.opts.input_format or self.default_format, self.formats, tokenizer, seq_len,
                                  self.relation, self.opts.short_seq_prob)
        self.pad_values = {**self.pad_values, "input_ids": tokenizer.pad_id if tokenizer.pad_id is not None else 0}
        self.variable_length = self.layout.variable_length

    def rng_for(self, seed: int, epoch: int, index: int) -> np.random.Generator:
        return super().rng_for(seed, epoch % self.static_copies if self.static_copies else epoch, index)

    def attach_model(self, model) -> None:
        """Give the masker the model being trained (MacBERT's similar words from its embeddings)."""
        self.masker.attach_model(model)

    def follow_steps(self, step_of, max_steps: int) -> None:
        """The Trainer's hook: `step_of()` is the step the next batch is for (1-based) of
        `max_steps`; staged masking picks its level from it (every other masking ignores it)."""
        if self.opts.stage_at is not None:
            raise PlmlabError("stage_at is for plmlab objective's view; in a run the stage follows the step")
        self.masker.follow_steps(step_of, max_steps)

    def num_examples(self, data) -> int:
        fmt = self.opts.input_format or self.default_format
        if self.document_languages(data) is not None and fmt not in PACKED_FORMATS:
            raise PlmlabError(f"objective {self.name} with languages (XLM) needs a packed input format "
                              f"({' or '.join(PACKED_FORMATS)}), not {fmt}")
        return self.layout.num_examples(data)

    def example_lengths(self, data) -> np.ndarray:
        """Tokens of each example (specials included) before padding: for batching by tokens
        (DOC-SENTENCES, SENTENCE-PAIR); see `pairs.batches_by_tokens`."""
        return self.layout.lengths(data)

    def example(self, data, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = self._finish(self.layout.example(data, index, rng), rng)
        languages = self.document_languages(data)
        if languages is not None:
            pieces = self.layout.plan(data)[index]  # [(start, end)] token ranges, one per document piece
            docs = data.document_of(np.array([start for start, _ in pieces]))
            out["language_ids"] = packed_languages(self.layout.template, [e - s for s, e in pieces], languages[docs])
        return out

    def from_ids(self, ids, rng, ids_b=None) -> dict[str, np.ndarray]:
        out = self._finish(self.layout.from_ids(np.asarray(ids, dtype=np.int64), rng, ids_b), rng)
        languages = self.view_languages(len(out["input_ids"]))  # one text: one language
        if languages is not None:
            out["language_ids"] = languages
        return out

    def _finish(self, wrapped: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = dict(wrapped)
        if self.masking.mask_prob > 0:
            corrupted = self.masker.corrupt(wrapped["input_ids"], rng)
            out["input_ids"], out["labels"] = corrupted["input_ids"], corrupted["labels"]
        return out

    def describe(self, example: dict) -> dict:
        labels = np.asarray(example.get("labels", []))
        masked = np.flatnonzero(labels != IGNORE_INDEX) if len(labels) else np.zeros(0, dtype=np.int64)
        ids = np.asarray(example["input_ids"])
        kinds = [self.masker.kind(int(labels[p]), int(ids[p])) for p in masked]
        # The share of the *original* candidates selected: a position now holding [MASK] was a
        # candidate before corruption, so count candidates on the text with its labels put back.
        original = np.where(labels != IGNORE_INDEX, labels, ids) if len(labels) == len(ids) else ids
        return {"masked_positions": masked.tolist(), "replacement": kinds,
                "mask_rate": round(len(masked) / max(1, int(self.masker.candidates(original).sum())), 4),
                **self.masker.view(original), **self.describe_languages(example)}

    def metrics(self, batch: dict, output) -> dict[str, float]:
        """Masked-token accuracy (and pair accuracy) of a batch, with the counts to weight them.

        Keys: mlm_accuracy, mlm_count (masked tokens); {nsp|sop}_accuracy, {nsp|sop}_count and
        pair_count (pairs).
        """
        out: dict[str, float] = {}
        labels = batch.get("labels")
        if labels is not None and output.logits is not None:
            sel = labels != IGNORE_INDEX
            pred = output.logits.argmax(-1)
            out["mlm_count"] = int(sel.sum())
            out["mlm_accuracy"] = float((pred[sel] == labels[sel]).float().mean()) if out["mlm_count"] else 0.0
        key = self.layout.label_key
        if key in batch and getattr(output, "pair_logits", None) is not None:
            pair = batch[key].view(-1)
            out["pair_count"] = int(pair.numel())
            out[f"{self.layout.relation}_accuracy"] = float((output.pair_logits.argmax(-1) == pair).float().mean())
            out[f"{self.layout.relation}_count"] = out["pair_count"]  # the count that weights it, by its own name
        return out


OBJECTIVES = {"mlm": MaskedLM}
