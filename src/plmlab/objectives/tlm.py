"""Translation language modelling (XLM, Lample & Conneau 2019, section 3.3 and figure 1).

A parallel pair is concatenated into one input, each sentence wrapped in </s> as XLM's code
does; every token carries its sentence's language, positions restart at 0 for the second
sentence, and MLM masking (15 % selected, 80/10/10; objectives/masking.py's `Masker`) runs over
both halves, so a masked English word can be predicted from the French context:

    tokens     </s> the  cat  </s>  </s> le   chat </s>
    positions  0    1    2    3     0    1    2    3
    languages  en   en   en   en    fr   fr   fr   fr
    input      </s> the  [M]  </s>  </s> le   chat </s>     labels: cat at position 2

Data: a pair file (data/pairs.py) read as the corpus, one document [src_lang, src, tgt_lang,
tgt] per pair. Language ids come from objectives/languages.py's table (shared with CLM and
MLM): the positions of the names in `languages` (the model's lang2id; a name not in it is one
line), else the sorted names found in the first split the objective reads (pretraining counts
the training split first), later splits' new names appended: pass `languages` to fix them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.pairs import SENTENCES_PER_PAIR
from ..data.shards import TokenData
from ..errors import PlmlabError
from ..masks import IGNORE_INDEX
from .base import Objective
from ..families.fits import Fits
from .languages import LanguageIds, check_languages, languages_option
from .masking import Masker, Masking
from .options import option

NOT_PAIRS = ('objective tlm reads a corpus of translation pairs (JSONL lines {"src", "tgt", "src_lang", '
             '"tgt_lang"}); ')


@dataclass
class TlmOptions(Masking):
    """MLM's masking options, the language table, and the languages of a single shown pair."""

    nullable = frozenset({"languages", "src_lang", "tgt_lang"})
    languages: list | None = languages_option()
    src_lang: str | None = option(None, str, "language of --text (the `plmlab objective` view)")
    tgt_lang: str | None = option(None, str, "language of --text-b (the `plmlab objective` view)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_languages("tlm", self.languages)


class TranslationLM(LanguageIds, Objective):
    name = "tlm"
    tokenizer_style = "roberta"
    Options = TlmOptions
    fits = Fits(arch="encoder", head="lm", languages=True)  # XLM: the tied pred_layer on an encoder
    pad_values = {**Objective.pad_values, **LanguageIds.pad_language}

    def __init__(self, tokenizer, seq_len: int, **options) -> None:
        super().__init__(tokenizer, seq_len, **options)
        if tokenizer.eos_id is None:
            raise PlmlabError("objective tlm wraps each sentence in </s>: the tokenizer has no end-of-sequence token")
        if seq_len < 6:
            raise PlmlabError(f"objective tlm needs --seq-len of at least 6 (two sentences and four </s>), got {seq_len}")
        self.masker = Masker(tokenizer, self.opts)
        self.pad_values = {**self.pad_values, "input_ids": tokenizer.pad_id if tokenizer.pad_id is not None else 0}
        self.init_languages()
        self._names: dict[int, list[str]] = {}  # id(data) -> each pair's (src, tgt) language names

    # --- languages -------------------------------------------------------------------------------
    def language_id(self, name: str, where: str = "") -> int:
        return self.table.id(name, where)

    def _pair_languages(self, data: TokenData) -> list[str]:
        """Both language names of every pair of `data`, decoded once per split."""
        if id(data) not in self._names:
            if data.n_docs and not (np.diff(data.doc_sents) == SENTENCES_PER_PAIR).all():
                raise PlmlabError(NOT_PAIRS + "this corpus has documents of other shapes (give --corpus "
                                  "PAIRS.jsonl: no parallel text is built in)")
            names = [self.tokenizer.decode(s).strip() for d in range(data.n_docs)
                     for s in data.sentences(d)[0::2]]  # sentences 0 and 2: the language codes
            self.table.add(names, "the corpus: ")
            self._names[id(data)] = names
        return self._names[id(data)]

    # --- examples ------------------------------------------------------------------------------
    def num_examples(self, data: TokenData) -> int:
        self._pair_languages(data)
        return data.n_docs

    def example(self, data: TokenData, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        names = self._pair_languages(data)
        _, src, _, tgt = data.sentences(index)
        langs = (self.language_id(names[2 * index]), self.language_id(names[2 * index + 1]))
        return self.pair_example(src, tgt, langs, rng)

    def from_ids(self, ids, rng, ids_b=None) -> dict[str, np.ndarray]:
        o = self.opts
        if ids_b is None or o.src_lang is None or o.tgt_lang is None:
            raise PlmlabError("objective tlm shows a translation pair: give --text-b and --set src_lang=... "
                              "--set tgt_lang=...")
        return self.pair_example(ids, ids_b, (self.language_id(o.src_lang), self.language_id(o.tgt_lang)), rng)

    def pair_example(self, src, tgt, langs: tuple[int, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """</s> src </s> </s> tgt </s> (see the module docstring), masked over both halves."""
        src, tgt = truncate_pair(list(src), list(tgt), self.seq_len - 4)
        eos = self.tokenizer.eos_id
        halves = [np.asarray([eos, *src, eos], dtype=np.int64), np.asarray([eos, *tgt, eos], dtype=np.int64)]
        ids = np.concatenate(halves)  # (T,)
        corrupted = self.masker.corrupt(ids, rng)
        return {"input_ids": corrupted["input_ids"], "labels": corrupted["labels"],
                "attention_mask": np.ones_like(ids),
                "position_ids": np.concatenate([np.arange(len(h)) for h in halves]),  # reset for the second
                "language_ids": np.concatenate([np.full(len(h), lang) for h, lang in zip(halves, langs)])}

    def describe(self, example: dict) -> dict:
        labels, positions = np.asarray(example["labels"]), np.asarray(example["position_ids"])
        second = int(np.flatnonzero(positions == 0)[1])  # where the target sentence starts
        masked = np.flatnonzero(labels != IGNORE_INDEX)
        original = np.where(labels != IGNORE_INDEX, labels, example["input_ids"])
        return {"masked_positions": masked.tolist(), "target_start": second,
                "masked_in_source": int((masked < second).sum()), "masked_in_target": int((masked >= second).sum()),
                "mask_rate": round(len(masked) / max(1, int(self.masker.candidates(original).sum())), 4),
                "languages": list(self.languages)}


def truncate_pair(a: list[int], b: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Drop tokens from the end of the longer sentence until both fit in `budget` (BERT's
    `truncate_seq_pair`): a long pair keeps as much of each side as it can."""
    while len(a) + len(b) > budget:
        (a if len(a) >= len(b) else b).pop()
    return a, b


OBJECTIVES = {"tlm": TranslationLM}
