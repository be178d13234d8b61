"""`generate`: validate the options, lay out the prompts, pick the runner and the search."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch

from ..errors import PlmlabError
from ..families import family_of
from .compiled import StaticDecoderRunner, check_compilable
from .filters import build_pipeline, check_options
from .layout import decode_layout
from .runners import DecoderRunner, EncoderDecoderRunner
from .search import SearchOptions, beam_search, sample_search
from .streaming import CallbackStreamer, StopStrings


class _FromConfig:
    """Default of eos_token_id / pad_token_id: take the model config's value (as transformers
    takes its generation config's); pass None explicitly to have no EOS."""

    def __repr__(self) -> str:
        return "FROM_CONFIG"


FROM_CONFIG = _FromConfig()

def generate(
    model,
    input_ids,
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int = 20,
    do_sample: bool = False,
    temperature: float | None = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    num_beams: int = 1,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    no_repeat_ngram_size: int = 0,
    repetition_penalty: float = 1.0,
    eos_token_id: int | Sequence[int] | None = FROM_CONFIG,
    pad_token_id: int | None = FROM_CONFIG,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    streamer=None,
    stop: Iterable[str] | None = None,
    tokenizer=None,
    truncate: str | None = None,
    use_cache: bool = True,
    compile: bool | None = None,
    language: int | str | None = None,
) -> torch.LongTensor:
    """Decode a continuation of `input_ids`; returns the generated ids (B, n), n <= max_new_tokens.

    Only the new ids, without the prompt -- unlike transformers' `generate`, which returns prompt +
    new ids for a decoder. A decoder's full sequences, as transformers returns them, are
    `torch.cat([input_ids, plmlab.generate(model, input_ids, ...)], dim=1)` for a (B, T) tensor.

    The ids are continued as given, in the 1-D prefix layout (as transformers' generate does for
    any model). A GLM with 2-D positions continues a text as the blank after it instead
    (`[CLS] text [gMASK] <eos> | <sop> ...`, what its pretraining fills): `plmlab generate`, the
    "text-generation" pipeline, serve's /v1/completions and `plmlab.families.glm.continuation` lay it out.

    input_ids: (B, T) or (T,) tensor with an optional (B, T) `attention_mask` (1 = token), or a
    list of token-id lists of any lengths (padded here). Decoder-only prompts are decoded
    left-padded (right-padded ones are re-laid); for an encoder-decoder, input_ids feed the
    encoder and the result is the decoder's output without its start token.

    Greedy (default), sampling (`do_sample`: temperature, then top-k, top-p, min-p, as in
    transformers) or beam search (`num_beams` > 1: `length_penalty`, `early_stopping` True /
    False / "never"); `repetition_penalty` and `no_repeat_ngram_size` apply to all three. Greedy
    and beam search give the same tokens as transformers' `generate`. `temperature=0` means greedy.

    A row ends at an `eos_token_id` (default: the model config's; None: never) or when its decoded
    text contains one of `stop` (needs `tokenizer`, any object with `.decode(ids)`); afterwards it
    receives `pad_token_id` (default: the config's, else the EOS id). `seed` or `generator` make
    sampling reproducible. `streamer` gets each step's tokens: an object with `put(tokens (B,))`
    and `end()`, or a plain function. Prompt + max_new_tokens must fit the model's context
    (`max_positions`) unless `truncate="left"` drops the oldest prompt tokens (a leading BOS is
    kept). `use_cache=False` recomputes the whole sequence each step (slow; a reference).
    `compile=True` runs each step through torch.compile over a static KV cache (decoder-only,
    greedy or sampling; the first call compiles, for seconds to minutes; same tokens); None takes
    the model's `decode_compile` attribute (set by `prepare_for_decoding`, `--compile`).
    `language` (XLM): a name of the model's `languages` or an id, the language embedding of the
    prompt and of every generated token (transformers' `langs` / `lang_id`); None takes the model's
    `decode_language` attribute (`set_decode_language`, `plmlab generate --lang`), else none.
    """
    _check(model, max_new_tokens, num_beams, truncate, early_stopping, streamer, stop, tokenizer)
    config = model.config
    if compile is None:
        compile = bool(getattr(model, "decode_compile", False))
    if compile:
        check_compilable(config, num_beams, use_cache)
    if not isinstance(length_penalty, (int, float)) or not math.isfinite(length_penalty):
        raise PlmlabError(f"length_penalty must be a finite number, got {length_penalty!r}")
    check_options(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                  repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size)
    if do_sample and temperature == 0:
        do_sample = False  # the limit of temperature -> 0 is the argmax
    device = next(model.parameters()).device
    ids, mask = _as_batch(input_ids, attention_mask, device, left=family_of(config).continues_prompt)
    ids, mask = _fit_context(ids, mask, max_new_tokens, config, truncate)
    eos = _resolve_eos(eos_token_id, config)
    if max_new_tokens == 0:
        return ids.new_zeros(ids.shape[0], 0)
    n_eos = 0 if eos is None else eos.numel()
    pipeline = build_pipeline(
        do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
        repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
        min_keep=n_eos + 1 if num_beams > 1 else 1,  # beam sampling keeps a non-EOS token (as transformers)
    )
    if generator is None and seed is not None:
        generator = torch.Generator(device=device).manual_seed(int(seed))
    if streamer is not None and not hasattr(streamer, "put"):
        streamer = CallbackStreamer(streamer)
    stop = [s for s in (stop or []) if s]
    options = SearchOptions(
        max_new_tokens=max_new_tokens, pipeline=pipeline, eos=eos, pad=_resolve_pad(pad_token_id, config, eos),
        do_sample=do_sample, generator=generator, streamer=streamer,
        stop=StopStrings(tokenizer, stop, [] if eos is None else eos.tolist()) if stop else None,
        num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping,
    )
    language_id = resolve_language(config, getattr(model, "decode_language", None) if language is None else language)
    if language_id is not None:
        if compile:
            raise PlmlabError("compile=True (--compile) does not cover language ids (XLM); decode without it")
        model = WithLanguage(model, language_id)
    return _decode(model, ids, mask, options, use_cache, compile)


def _check(model, max_new_tokens, num_beams, truncate, early_stopping, streamer, stop, tokenizer) -> None:
    """One-line errors for a model that cannot generate and for invalid options."""
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
        raise PlmlabError(f"generate takes a loaded model (plmlab.load_pretrained(DIR)), not a "
                          f"{type(model).__name__}; for a directory and a text: plmlab.pipeline('text-generation', DIR)")
    if not family_of(model.config).generates:
        raise PlmlabError("an encoder-only model cannot generate text; use a decoder or encoder-decoder model")
    if getattr(model, "head", None) is None:
        raise PlmlabError("this model has no LM head: it cannot generate")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise PlmlabError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    if not isinstance(num_beams, int) or num_beams < 1:
        raise PlmlabError(f"num_beams must be a positive integer, got {num_beams!r}")
    if truncate not in (None, "left"):
        raise PlmlabError(f"truncate must be None or 'left', got {truncate!r}")
    if early_stopping not in (True, False, "never"):
        raise PlmlabError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    if any(stop or []) and tokenizer is None:
        raise PlmlabError("stop strings need a tokenizer to decode the generated ids")
    if streamer is not None and num_beams > 1:
        raise PlmlabError("streaming works with greedy decoding and sampling, not with beam search")


def _decode(model, ids: torch.Tensor, mask: torch.Tensor, options: SearchOptions, use_cache: bool,
            compile: bool = False) -> torch.Tensor:
    """Run the search with the runner of the model's skeleton, in eval mode and without grad."""
    config = model.config
    search = beam_search if options.num_beams > 1 else sample_search
    modes = [(m, m.training) for m in model.modules()]
    model.eval()  # dropout off: decoding is deterministic for a given seed
    try:
        # no_grad, not inference_mode: the returned ids may feed a training step later.
        # the compiled step picks its own kernels; the layout's cached copies would break its graph
        with torch.no_grad(), decode_layout(model, enabled=not compile):
            if not family_of(config).continues_prompt:  # an encoder-decoder: the decoder answers from its start
                start = config.decoder_start()
                runner = EncoderDecoderRunner(model, ids, mask, options.max_new_tokens + 1, use_cache, start)
                history = ids.new_full((ids.shape[0], 1), start)
                return search(runner, history, torch.ones_like(history, dtype=torch.bool), options)
            max_len = ids.shape[1] + options.max_new_tokens
            runner = (StaticDecoderRunner(model, ids, mask, max_len) if compile
                      else DecoderRunner(model, ids, mask, max_len, use_cache))
            return search(runner, ids, mask.bool(), options)
    finally:
        for m, training in modes:
            m.training = training


def _as_batch(input_ids, attention_mask, device, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids and mask on `device`; decoder prompts left-padded."""
    if isinstance(input_ids, torch.Tensor):
        ids = input_ids.to(device=device, dtype=torch.long)
        if ids.dim() == 1:
            ids = ids[None]
        if ids.dim() != 2:
            raise PlmlabError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        if attention_mask is None:
            mask = torch.ones_like(ids)
        else:
            mask = attention_mask.to(device=device, dtype=torch.long)
            mask = mask[None] if mask.dim() == 1 else mask
            if mask.shape != ids.shape:
                raise PlmlabError(f"attention_mask {tuple(mask.shape)} does not match input_ids {tuple(ids.shape)}")
        rows = None
        if left and not _is_left_padded(mask):  # re-lay right (or oddly) padded prompts
            rows = [r[m.bool()].tolist() for r, m in zip(ids, mask)]
    else:
        rows = list(input_ids)
        if rows and isinstance(rows[0], int):  # one prompt as a flat list
            rows = [rows]
        rows = [list(map(int, r)) for r in rows]
        ids = mask = None
    if rows is not None:
        if not rows:
            raise PlmlabError("no prompt given")
        ids, mask = pad_batch(rows, pad=0, left=left, device=device)
    if ids.shape[0] == 0:
        raise PlmlabError("no prompt given")
    if bool((mask.sum(dim=1) == 0).any()):
        raise PlmlabError("a prompt is empty: give at least one token (e.g. the BOS token)")
    return ids, mask


def pad_batch(rows: list[list[int]], pad: int = 0, left: bool = True,
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token-id lists to one (B, T) tensor (left padding for decoders) and its mask."""
    T = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            sl = slice(T - len(r), T) if left else slice(0, len(r))
            ids[i, sl] = torch.tensor(r, dtype=torch.long)
            mask[i, sl] = 1
    return ids.to(device), mask.to(device)


def _is_left_padded(mask: torch.Tensor) -> bool:
    # Once a row has a token, it has tokens to the end: the mask is non-decreasing along T.
    return bool((mask[:, 1:] >= mask[:, :-1]).all())


def fit_context(config, rows: list[list[int]], max_new_tokens: int, truncate: str | None = None) -> list[list[int]]:
    """The prompts as `generate` will see them: an over-long one raises PlmlabError, or loses its
    oldest tokens with truncate='left' (lets a caller fail before printing anything)."""
    ids, mask = pad_batch(rows, left=family_of(config).continues_prompt)
    ids, mask = _fit_context(ids, mask, max_new_tokens, config, truncate)
    return [r[m.bool()].tolist() for r, m in zip(ids, mask)]


def context_limit(config) -> int | None:
    """The most positions a prompt and its answer may take, or None (no hard limit): the family's."""
    return family_of(config).context_limit(config)


def _fit_context(ids, mask, max_new_tokens: int, config, truncate: str | None):
    """Check prompt + new tokens against the context; with truncate='left', drop the oldest
    prompt tokens (keeping a leading BOS) until they fit."""
    limit = context_limit(config)
    if limit is None:
        return ids, mask
    if not family_of(config).continues_prompt:  # an encoder-decoder: the encoder and decoder have a context each
        if max_new_tokens + 1 > limit:
            raise PlmlabError(f"max_new_tokens={max_new_tokens} exceeds the decoder's context of {limit} positions")
        if ids.shape[1] > limit:
            if truncate != "left":
                raise PlmlabError(f"the input has {ids.shape[1]} tokens, more than the model's context of {limit} "
                                  f"positions; shorten it or truncate it (truncate='left', --truncate-left)")
            ids, mask = _truncate_rows(ids, mask, limit, None, left=False)
        return ids, mask
    longest = int(mask.sum(dim=1).max())
    if longest + max_new_tokens <= limit:
        T = ids.shape[1]
        return (ids, mask) if T + max_new_tokens <= limit else (ids[:, T - longest:], mask[:, T - longest:])
    room = limit - max_new_tokens
    if truncate != "left" or room < 1:
        hint = ("lower max_new_tokens" if room < 1 else
                "shorten it, lower max_new_tokens, or truncate it (truncate='left', --truncate-left)")
        raise PlmlabError(f"the prompt has {longest} tokens; with max_new_tokens={max_new_tokens} that exceeds "
                          f"the model's context of {limit} positions; {hint}")
    return _truncate_rows(ids, mask, room, config.bos_token_id, left=True)


def _truncate_rows(ids, mask, room: int, bos: int | None, left: bool):
    rows = []
    for r, m in zip(ids, mask):
        toks = r[m.bool()].tolist()
        if len(toks) > room:
            keep_bos = bos is not None and toks[0] == bos and room > 1
            toks = ([bos] if keep_bos else []) + toks[len(toks) - (room - keep_bos):]
        rows.append(toks)
    return pad_batch(rows, pad=0, left=left, device=ids.device)


def _resolve_eos(eos_token_id, config) -> torch.Tensor | None:
    eos = config.eos_token_id if eos_token_id is FROM_CONFIG else eos_token_id
    if eos is None:
        return None
    eos = [eos] if isinstance(eos, int) else list(eos)
    if not eos:
        return None
    return torch.tensor([int(e) for e in eos], dtype=torch.long)


def _resolve_pad(pad_token_id, config, eos: torch.Tensor | None) -> int:
    pad = config.pad_token_id if pad_token_id is FROM_CONFIG else pad_token_id
    if pad is None and eos is not None:
        pad = int(eos[0])
    return int(pad) if pad is not None else 0


# --- XLM's language embedding while decoding ------------------------------------------------------
class WithLanguage:
    """The model, every call given `language_ids` (B, T) of one language: the prompt's and each
    new token's, as transformers' XLM `langs` (its config's `lang_id`). All else is the model's."""

    def __init__(self, model, language_id: int) -> None:
        self.model, self.language_id = model, language_id

    def __call__(self, input_ids: torch.Tensor, **kwargs):
        return self.model(input_ids, language_ids=torch.full_like(input_ids, self.language_id), **kwargs)

    def __getattr__(self, name: str):  # only for what the instance lacks: the model's attributes
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)


def resolve_language(config, language: int | str | None) -> int | None:
    """The language id of a name in `config.languages`, of an id (or its digits), or None."""
    if language is None:
        return None
    if not config.n_languages:
        raise PlmlabError("this model has no language embeddings (n_languages=0): a language is for XLM models")
    if isinstance(language, str) and language in config.languages:
        return config.languages.index(language)
    if isinstance(language, str) and language.isdigit():
        language = int(language)
    if isinstance(language, int) and not isinstance(language, bool) and 0 <= language < config.n_languages:
        return language
    names = f"its languages are {', '.join(config.languages)}" if config.languages else "it names none"
    raise PlmlabError(f"unknown language {language!r} for this model ({names}; ids 0..{config.n_languages - 1})")


def set_decode_language(model, language: int | str | None):
    """Make `language` (checked) the default of every later `generate` call on `model`."""
    model.decode_language = resolve_language(model.config, language)
    return model
