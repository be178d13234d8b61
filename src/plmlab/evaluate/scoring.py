"""Log-likelihood of (context, continuation) pairs for every family: the one primitive that
multiple choice, the built-in suite and the lm-evaluation-harness adapter all call.

    loglikelihoods(model, tokenizer, [("The cat sat on the", " mat"), ...])  # [(logp, is_greedy), ...]

Tokenisation follows lm-evaluation-harness (lm_eval/api/model.py `loglikelihood`, `_encode_pair`)
so the same checkpoint gives the same numbers in both tools: trailing spaces of the context move
to the continuation; a decoder encodes the whole text and the context, and the continuation is
whole[len(context):]; an empty context is the prefix token (BOS, else EOS); T5 and GLM encode the
continuation on its own. Each family then scores the continuation its own way:

    decoder          sum log p(cont_t | context, cont_<t), the last token never fed   scoring_causal
    encoder-decoder  the continuation as the decoder's target, the context as input    scoring_seq2seq
    GLM (2-D pos.)   the continuation as the blank: context [MASK] | [sop] cont        scoring_glm
    encoder          pseudo-log-likelihood, each continuation token masked in turn     scoring_pll
"""

from __future__ import annotations

from ..errors import PlmlabError
from ..families import family_of
from .scoring_causal import score_causal
from .scoring_glm import score_glm
from .scoring_parts import Pair, special_wrap
from .scoring_pll import score_pll
from .scoring_seq2seq import score_seq2seq

SCORERS = {"causal": score_causal, "seq2seq": score_seq2seq, "glm": score_glm, "pll": score_pll}


def family(model) -> str:
    """Which scorer a model takes: causal, seq2seq, glm or pll (refused without an LM / MLM head)."""
    config = model.config
    if getattr(model, "head", None) is None or config.head not in ("lm", "mlm") or config.classifier != "none":
        raise PlmlabError(f"scoring text needs a model with an LM or MLM head; this {config.arch} has head "
                          f"{config.head!r} (a fine-tuned classifier scores with --task classification)")
    return family_of(config).scorer


def split_spaces(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's rule: trailing spaces of the context belong to the continuation."""
    n = len(context) - len(context.rstrip())
    return (context[:-n], context[-n:] + continuation) if n else (context, continuation)


def prefix_id(tokenizer) -> int:
    """What an empty context is (lm-eval's prefix_token_id): BOS, else EOS."""
    start = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
    if start is None:
        raise PlmlabError("an empty context needs a BOS or EOS token and the tokenizer has neither")
    return start


def encode_pair(tokenizer, context: str, continuation: str, whole: bool = True) -> Pair:
    """(context ids, continuation ids) exactly as lm-eval's HF backend makes them; `whole`: a
    decoder's split of the encoded whole text, else (T5, GLM) each part encoded on its own."""
    context, continuation = split_spaces(context, continuation)
    if context == "":  # (a context of spaces only too, where lm-eval would fail on an empty encoding)
        cont = tokenizer.encode(continuation, add_special_tokens=False)
        start = prefix_id(tokenizer)
        return ([start], cont) if not cont or cont[0] != start else (cont[:1], cont[1:])
    if whole:
        ctx = tokenizer.encode(context)
        return ctx, tokenizer.encode(context + continuation)[len(ctx):]
    return tokenizer.encode(context), tokenizer.encode(continuation, add_special_tokens=False)


def plain_pair(tokenizer, context: str, continuation: str, whole: bool) -> Pair:
    """(context ids, continuation ids) without special tokens, spaces moved as lm-eval moves them;
    `whole`: the continuation is the encoded whole text past the context (an encoder reads both
    at once), else it is encoded on its own (GLM's blank)."""
    context, continuation = split_spaces(context, continuation)
    ctx = tokenizer.encode(context, add_special_tokens=False)
    if whole:
        return ctx, tokenizer.encode(context + continuation, add_special_tokens=False)[len(ctx):]
    return ctx, tokenizer.encode(continuation, add_special_tokens=False)


def encode_pairs(model, tokenizer, pairs: list[tuple[str, str]]) -> list[Pair]:
    """Token pairs for `model`'s family; a continuation that encodes to nothing is refused."""
    kind = family(model)
    out = []
    for context, continuation in pairs:
        if kind in ("glm", "pll"):  # Part A / the encoder's [CLS] ... [SEP] are added by the scorer
            ids = plain_pair(tokenizer, context, continuation, whole=kind == "pll")
        else:
            ids = encode_pair(tokenizer, context, continuation, whole=kind == "causal")
        if not ids[1]:
            raise PlmlabError(f"the continuation {continuation!r} encodes to no tokens")
        out.append(ids)
    return out


def loglikelihood_tokens(model, tokenizer, pairs: list[Pair], batch_size: int = 16) -> list[tuple[float, bool]]:
    """(sum of log p of the continuation's tokens, whether each was the argmax) per token pair."""
    if batch_size < 1:
        raise PlmlabError(f"batch_size must be >= 1, got {batch_size}")
    return SCORERS[family(model)](model, tokenizer, pairs, batch_size)


def loglikelihoods(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 16) -> list[tuple[float, bool]]:
    """(log-likelihood, is_greedy) of each (context, continuation) text pair (see the module docstring)."""
    return loglikelihood_tokens(model, tokenizer, encode_pairs(model, tokenizer, pairs), batch_size)
