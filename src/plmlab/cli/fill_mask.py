"""`plmlab fill-mask --model DIR "text with [MASK]"`: the MLM head's top-k tokens per mask.

Write the mask as the model's tokenizer does (`[MASK]` for BERT / ALBERT, `<mask>` for
RoBERTa); either spelling is accepted and mapped to the tokenizer's own.
"""

from __future__ import annotations

import json

import torch

from ..errors import PlmlabError

MASK_SPELLINGS = ("[MASK]", "<mask>")


def register(sub) -> None:
    p = sub.add_parser("fill-mask", help="predict the masked tokens of a text with an MLM model")
    p.add_argument("text", nargs="+", help="text(s) with one or more [MASK] / <mask>")
    p.add_argument("--model", required=True, help="checkpoint directory (plmlab or Hugging Face)")
    p.add_argument("--tokenizer", help="tokenizer directory (default: the model directory)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--truncate", action="store_true", help="cut texts longer than the model's context")
    p.add_argument("--json", action="store_true", help="print one JSON object per text")
    p.set_defaults(func=run)


def load_model_and_tokenizer(model_dir: str, tokenizer_dir: str | None = None):
    """The model in eval mode and its tokenizer, checked against each other."""
    from .. import load_pretrained
    from ..hf import resolve_dir
    from ..tokenizers import load_tokenizer

    model = load_pretrained(model_dir)
    try:
        tokenizer = load_tokenizer(tokenizer_dir or resolve_dir(model_dir))  # a run dir: its final/
    except PlmlabError as e:
        raise PlmlabError(f"{e} (pass --tokenizer DIR: the model directory has no tokenizer)") from None
    if tokenizer.vocab_size > model.config.vocab_size:
        raise PlmlabError(f"the tokenizer has {tokenizer.vocab_size} ids but the model only "
                          f"{model.config.vocab_size} embeddings: they do not belong together")
    return model, tokenizer


def encode(tokenizer, text: str, max_len: int, truncate: bool) -> list[int]:
    """Token ids with the tokenizer's special tokens; an error (or a cut) past `max_len`."""
    ids = tokenizer.encode(text)
    if len(ids) > max_len:
        if not truncate:
            raise PlmlabError(f"the text has {len(ids)} tokens, more than the model's {max_len} positions "
                              "(shorten it or pass --truncate)")
        ids = ids[: max_len - 1] + ids[-1:]  # keep the closing special token
    return ids


@torch.no_grad()
def fill_mask(model, tokenizer, text: str, top_k: int = 5, truncate: bool = False) -> list[dict]:
    """One record per mask position: {"position", "predictions": [{token, token_id, score, sequence}]}."""
    if model.config.head != "mlm":
        raise PlmlabError("the model has no MLM head (a base or fine-tuned checkpoint); fill-mask needs "
                          "a *ForMaskedLM or *ForPreTraining model")
    mask_token = tokenizer.special_tokens.get("mask")
    if mask_token is None:
        raise PlmlabError("the tokenizer has no mask token")
    for spelling in MASK_SPELLINGS:
        text = text.replace(spelling, mask_token)
    ids = encode(tokenizer, text, model.config.max_positions, truncate)
    positions = [i for i, t in enumerate(ids) if t == tokenizer.mask_id]
    if not positions:
        raise PlmlabError(f"no {mask_token} in the text: mark the word(s) to predict with {mask_token}")
    input_ids = torch.tensor([ids])  # (1, T)
    logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits[0]  # (T, V)
    probs = logits[positions].float().softmax(-1)  # (M, V)
    scores, top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)  # (M, k)
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


def run(args) -> int:
    if args.top_k < 1:
        raise PlmlabError("--top-k must be at least 1")
    model, tokenizer = load_model_and_tokenizer(args.model, args.tokenizer)
    for text in args.text:
        masks = fill_mask(model, tokenizer, text, args.top_k, args.truncate)
        if args.json:
            print(json.dumps({"text": text, "masks": masks}))
            continue
        print(text)
        for k, record in enumerate(masks, 1):
            label = f"  mask {k} (position {record['position']}):" if len(masks) > 1 else ""
            if label:
                print(label)
            for p in record["predictions"]:
                print(f"    {p['score']:7.4f}  {p['token']:<16} {p['sequence']}")
    return 0
