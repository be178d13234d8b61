"""What an objective makes of one text: the record `plmlab objective NAME --json` prints.

It goes through the objective's own `from_ids`, the code path the trainer's examples use, so
what a learner sees here is exactly what the model is trained on.
"""

from __future__ import annotations

import numpy as np

from ..data.pairs import read_pairs
from ..errors import PlmlabError
from . import example_rng, get_objective


def objective_view(name: str, text: str, text_b: str | None, tokenizer, seed: int = 0, seq_len: int = 512,
                   **options) -> dict:
    """The JSON view of one example (the `plmlab objective` verb's record)."""
    objective = get_objective(name)(tokenizer, seq_len, **options)
    ids = tokenizer.encode(text, add_special_tokens=False)
    if not ids:
        raise PlmlabError("the text is empty after tokenization")
    ids_b = tokenizer.encode(text_b, add_special_tokens=False) if text_b else None
    example = objective.from_ids(ids, example_rng(seed, 0, 0), ids_b)
    out: dict = {"objective": name, "original_ids": ids}
    if ids_b is not None:
        out["original_ids_b"] = ids_b
    out.update({k: np.asarray(v).tolist() for k, v in example.items()})
    out["tokens"] = tokenizer.convert_ids_to_tokens(out["input_ids"])
    out["special_ids"] = dict(tokenizer.special_ids)
    for role in ("mask", "eos", "pad", "bos", "cls", "sep"):
        value = getattr(tokenizer, f"{role}_id", None)
        if value is not None:
            out[f"{role}_token_id"] = value
    if tokenizer.sentinel_ids:
        out["sentinel_ids"] = list(tokenizer.sentinel_ids)
    out.update(objective.describe(example))
    return out


def pairs_view(path: str, tokenizer, seed: int = 0, seq_len: int = 512, index: int = 0, **options) -> dict:
    """The `plmlab objective tlm --pairs FILE` record: pair `index` of FILE through `from_ids`."""
    pairs = read_pairs(path)
    if not 0 <= index < len(pairs):
        raise PlmlabError(f"{path}: no pair {index} (the file has {len(pairs)})")
    pair = pairs[index]
    return objective_view("tlm", pair.src, pair.tgt, tokenizer, seed, seq_len,
                          **{**options, "src_lang": pair.src_lang, "tgt_lang": pair.tgt_lang})
