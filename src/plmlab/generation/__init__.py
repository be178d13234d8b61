"""Decoding: greedy, sampling and beam search over the KV cache, for decoder-only and
encoder-decoder models, with pure logit filters, streaming and stop strings.

    ids = plmlab.generate(model, input_ids, max_new_tokens=50, do_sample=True, top_p=0.9, seed=0)

Modules: `api` (generate: inputs, context, dispatch), `filters` (logit filters as a table),
`runners` (how each skeleton is fed; a family's positions and masks come from families/), `search`
(the loops), `streaming` (text out, stop strings), `layout` (the transposed weight copies decoding
reads), `compiled` (compile=True: the static-cache step, and `prepare_for_decoding` for --quantize /
--compile).
"""

from .api import FROM_CONFIG, context_limit, fit_context, generate, pad_batch
from .compiled import prepare_for_decoding
from .filters import (
    FILTERS, apply_pipeline, build_pipeline, min_p, no_repeat_ngram, repetition_penalty, temperature, top_k, top_p,
)
from .streaming import CallbackStreamer, StopStrings, TextStreamer, find_stop

__all__ = [
    "generate", "prepare_for_decoding", "FROM_CONFIG", "context_limit", "fit_context", "pad_batch",
    "FILTERS", "build_pipeline", "apply_pipeline",
    "temperature", "top_k", "top_p", "min_p", "repetition_penalty", "no_repeat_ngram",
    "TextStreamer", "CallbackStreamer", "StopStrings", "find_stop",
]
