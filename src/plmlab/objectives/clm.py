"""Causal language modelling (GPT, LLaMA): predict every next token.

The training stream is every document's tokens followed by EOS, back to back, cut into
windows of seq_len + 1 tokens (GPT-2 / nanoGPT style packing: windows cross document
boundaries, the EOS tells the model where one ends). A window gives
input_ids = w[:-1] and labels = w[1:], already aligned, so the model does not shift.

XLM's CLM (Lample & Conneau 2019, section 3.1) is the same stream with language embeddings: on a
corpus that names each document's language (data/languages.py) every input token gets its own
document's `language_ids`, a document's EOS included, so a window that crosses from an English
document into a French one switches language at the boundary:

    stream     the  cat  </s>  le   chat ...
    languages  en   en   en    fr   fr         (ids: objectives/languages.py's table)

An XLM encoder trains this way as a decoder of the same layers (`--arch decoder`: transformers'
`causal` XLM).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.shards import TokenData
from ..errors import PlmlabError
from .base import Objective
from ..families.fits import Fits
from .languages import LanguageIds, check_languages, lang_option, languages_option
from .options import ObjectiveOptions


@dataclass
class ClmOptions(ObjectiveOptions):
    """XLM's language table; without languages in the corpus, causal LM takes no options."""

    nullable = frozenset({"languages", "lang"})
    languages: list | None = languages_option()
    lang: str | None = lang_option()

    def __post_init__(self) -> None:
        check_languages("clm", self.languages)


class CausalLM(LanguageIds, Objective):
    name = "clm"
    Options = ClmOptions
    fits = Fits(arch="decoder", head="lm")  # an encoder would see the very token it predicts
    needs_eos = True
    causal_lm_baselines = True
    pad_values = {**Objective.pad_values, **LanguageIds.pad_language}

    def __init__(self, tokenizer, seq_len: int, **options) -> None:
        super().__init__(tokenizer, seq_len, **options)
        self.init_languages()

    @classmethod
    def check_fits(cls, config) -> None:
        try:
            super().check_fits(config)
        except PlmlabError as e:
            if not Fits(arch="encoder", head="lm").fits(config):
                raise
            # XLM: the same layers under a causal mask are transformers' `causal` XLM
            raise PlmlabError(f"{e}; or train this encoder causally as a decoder with --arch decoder") from None

    def num_examples(self, data: TokenData) -> int:
        self.document_languages(data)  # the corpus's languages join the table before the model is built
        stream = data.n_tokens + data.n_docs  # one EOS after each document
        return max(0, (stream - 1) // self.seq_len)

    def example(self, data: TokenData, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        start = index * self.seq_len
        window = self._window(data, start, self.seq_len + 1)
        out = {"input_ids": window[:-1], "labels": window[1:]}
        languages = self.document_languages(data)
        if languages is not None:
            positions = np.arange(start, start + self.seq_len)  # (T,) the inputs' stream positions
            docs = np.searchsorted(self._stream_starts(data), positions, side="right") - 1  # (T,)
            out["language_ids"] = languages[docs]  # (T,) each token's own document's language
        return out

    def _window(self, data: TokenData, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) of the virtual stream doc0 EOS doc1 EOS ..."""
        eos = self.tokenizer.eos_id
        starts = self._stream_starts(data)
        d = int(np.searchsorted(starts, start, side="right")) - 1
        out = np.empty(length, dtype=np.int64)
        filled = 0
        while filled < length:
            doc = data.document(d)
            offset = start + filled - int(starts[d])  # position inside "doc + EOS"
            take = min(len(doc) - offset, length - filled) if offset < len(doc) else 0
            out[filled : filled + take] = doc[offset : offset + take]
            filled += take
            if filled < length and offset + take == len(doc):
                out[filled] = eos
                filled += 1
            d += 1
        return out

    def _stream_starts(self, data: TokenData) -> np.ndarray:
        """Document d occupies [doc_offsets[d] + d, doc_offsets[d + 1] + d] in the stream, the
        last of those positions being its EOS. Computed once per split, not per example."""
        cached = getattr(self, "_starts", None)
        if cached is None or cached[0] is not data.doc_offsets:
            self._starts = (data.doc_offsets, data.doc_offsets[:-1] + np.arange(data.n_docs))
        return self._starts[1]

    def from_ids(self, ids, rng, ids_b=None):
        stream = np.asarray(list(ids) + [self.tokenizer.eos_id], dtype=np.int64)
        out = {"input_ids": stream[:-1], "labels": stream[1:]}
        languages = self.view_languages(len(ids))
        if languages is not None:
            out["language_ids"] = languages
        return out

    def describe(self, example: dict) -> dict:
        return self.describe_languages(example)


OBJECTIVES = {"clm": CausalLM}
