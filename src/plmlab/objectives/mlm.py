"""Masked language modelling (BERT, RoBERTa, ALBERT): the objective, on RoBERTa's input formats
(pairs.py), and BERT's / ALBERT's pair objectives (MLM + NSP, MLM + SOP). The masking itself
(selection, 80/10/10 replacement, whole words, n-grams) is masking.py's; MacBERT's and ERNIE's
maskers (macbert.py, knowledge_masking.py) are picked by `make_masker`.

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
from .base import Mean, Objective
from ..families.fits import Fits
from .knowledge_masking import KnowledgeMasker, StagedMasker
from .languages import LanguageIds, check_languages, lang_option, languages_option
from .macbert import MacbertMasker
from .masking import DEFAULT_STAGES, MASKINGS, Masker, Masking
from .options import option
from .pairs import make_layout


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


def make_masker(tokenizer, options: Masking) -> Masker:
    """The masker of `options.masking` (MlmOptions; plain `Masking` options: basic masking)."""
    method = getattr(options, "masking", "dynamic")
    maskers = {"macbert": MacbertMasker, "phrase": KnowledgeMasker, "entity": KnowledgeMasker, "staged": StagedMasker}
    return maskers.get(method, Masker)(tokenizer, options)


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

    def metrics(self, batch: dict, output) -> dict[str, Mean]:
        """Masked-token accuracy (over the masked tokens) and pair accuracy (over the pairs):
        mlm_accuracy, {nsp|sop}_accuracy."""
        out: dict[str, Mean] = {}
        labels = batch.get("labels")
        if labels is not None and output.logits is not None:
            sel = labels != IGNORE_INDEX
            out["mlm_accuracy"] = Mean(int((output.logits.argmax(-1)[sel] == labels[sel]).sum()), int(sel.sum()))
        key = self.layout.label_key
        if key in batch and getattr(output, "pair_logits", None) is not None:
            pair = batch[key].view(-1)
            out[f"{self.layout.relation}_accuracy"] = Mean(int((output.pair_logits.argmax(-1) == pair).sum()),
                                                           int(pair.numel()))
        return out


# --- the pair objectives (MLM of the pair + NSP or SOP) -----------------------------------------
class MaskedLMNextSentence(MaskedLM):
    """BERT: MLM + NSP on segment pairs (`[CLS] A [SEP] B [SEP]`)."""

    name = "mlm+nsp"
    tokenizer_style = "bert"
    fits = Fits(arch="encoder", head="mlm", pair_head=True)
    default_format = "segment-pair"
    formats = ("segment-pair", "sentence-pair")


class MaskedLMSentenceOrder(MaskedLMNextSentence):
    """ALBERT: MLM + SOP; masking of n-grams of whole words, n <= 3 (ALBERT's data script
    defaults: do_whole_word_mask, ngram 3, favor_shorter_ngram)."""

    name = "mlm+sop"
    tokenizer_style = "albert"
    relation = "sop"
    option_defaults = {"ngram": 3, "whole_word": True}


class NextSentence(MaskedLMNextSentence):
    """The pair construction alone (no masking): `plmlab objective nsp`. It trains no MLM head,
    so there is no fill-mask to show."""

    name = "nsp"
    option_defaults = {"mask_prob": 0.0}
    fits = Fits(arch="encoder", pair_head=True)
    demo = None


class SentenceOrder(MaskedLMSentenceOrder):
    name = "sop"
    option_defaults = {**MaskedLMSentenceOrder.option_defaults, "mask_prob": 0.0}
    fits = Fits(arch="encoder", pair_head=True)
    demo = None


OBJECTIVES = {c.name: c for c in (MaskedLM, MaskedLMNextSentence, MaskedLMSentenceOrder, NextSentence, SentenceOrder)}
