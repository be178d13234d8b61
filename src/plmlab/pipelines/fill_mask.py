"""fill-mask: the MLM head's top-k tokens for each mask of a text (BERT, RoBERTa, ALBERT).

Write the mask as the model's tokenizer does (`[MASK]` for BERT / ALBERT, `<mask>` for
RoBERTa); either spelling is accepted and mapped to the tokenizer's own.
"""

from __future__ import annotations

import torch

from ..errors import PlmlabError
from .base import Pipeline
from .loading import encode, model_device

MASK_SPELLINGS = ("[MASK]", "<mask>")


def _check_mlm(model) -> None:
    if model.config.head != "mlm":
        raise PlmlabError("the model has no MLM head (a base or fine-tuned checkpoint); fill-mask needs "
                          "a *ForMaskedLM or *ForPreTraining model")


@torch.no_grad()
def fill_mask(model, tokenizer, text: str, top_k: int = 5, truncate: bool = False) -> list[dict]:
    """One record per mask position: {"position", "predictions": [{token, token_id, score, sequence}]}."""
    _check_mlm(model)
    if not isinstance(top_k, int) or top_k < 1:
        raise PlmlabError(f"top_k must be a positive integer, got {top_k!r}")
    mask_token = tokenizer.special_tokens.get("mask")
    if mask_token is None:
        raise PlmlabError("the tokenizer has no mask token")
    for spelling in MASK_SPELLINGS:
        text = text.replace(spelling, mask_token)
    ids = encode(tokenizer, text, model.config.max_positions, truncate)
    positions = [i for i, t in enumerate(ids) if t == tokenizer.mask_id]
    if not positions:
        raise PlmlabError(f"no {mask_token} in the text: mark the word(s) to predict with {mask_token}")
    input_ids = torch.tensor([ids], device=model_device(model))  # (1, T)
    logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits[0]  # (T, V)
    probs = logits[positions].float().softmax(-1)  # (M, V) over every row, as transformers' pipeline
    # A model's table may have more rows than its tokenizer has ids (a preset's vocab_size above a
    # tokenizer trained on a small corpus): those rows name no token, so they are never proposed
    # (-1 ranks below every probability, even one that underflowed to 0).
    probs[:, tokenizer.vocab_size:] = -1.0
    scores, top = probs.topk(min(top_k, tokenizer.vocab_size, probs.shape[-1]), dim=-1)  # (M, k)
    out = []
    for m, pos in enumerate(positions):
        preds = []
        for score, tid in zip(scores[m].tolist(), top[m].tolist()):
            filled = list(ids)
            filled[pos] = tid
            preds.append({"token": tokenizer.decode([tid]).strip() or tokenizer.id_to_token(tid), "token_id": tid,
                          "score": score, "sequence": tokenizer.decode(filled)})
        out.append({"position": pos, "predictions": preds})
    return out


class FillMask(Pipeline):
    """Each text -> {"text", "masks": fill_mask(...)}."""

    task = "fill-mask"
    defaults = dict(top_k=5, truncate=False)

    def check(self, model) -> None:
        _check_mlm(model)

    def run(self, texts: list[str], top_k: int, truncate: bool) -> list[dict]:
        return [{"text": t, "masks": fill_mask(self.model, self.tokenizer, t, top_k, truncate)} for t in texts]
