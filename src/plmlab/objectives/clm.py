"""Causal language modelling (GPT, LLaMA): predict every next token.

The training stream is every document's tokens followed by EOS, back to back, cut into
windows of seq_len + 1 tokens (GPT-2 / nanoGPT style packing: windows cross document
boundaries, the EOS tells the model where one ends). A window gives
input_ids = w[:-1] and labels = w[1:], already aligned, so the model does not shift.
"""

from __future__ import annotations

import numpy as np

from ..data.shards import TokenData
from .base import Objective
from .fits import Fits


class CausalLM(Objective):
    name = "clm"
    fits = Fits(arch="decoder", head="lm")  # an encoder would see the very token it predicts
    needs_eos = True
    causal_lm_baselines = True

    def num_examples(self, data: TokenData) -> int:
        stream = data.n_tokens + data.n_docs  # one EOS after each document
        return max(0, (stream - 1) // self.seq_len)

    def example(self, data: TokenData, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        window = self._window(data, index * self.seq_len, self.seq_len + 1)
        return {"input_ids": window[:-1], "labels": window[1:]}

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
        return {"input_ids": stream[:-1], "labels": stream[1:]}


OBJECTIVES = {"clm": CausalLM}
