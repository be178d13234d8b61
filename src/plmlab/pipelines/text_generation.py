"""text-generation and text2text: prompts in, generated text out (plmlab.generation underneath).

    gen = plmlab.pipeline("text-generation", model="run/", max_new_tokens=20)
    gen("Once upon a time")  # {"prompt": ..., "text": the continuation, "ids": [...]}

A decoder continues its prompt; an encoder-decoder (T5) answers it, and where the prompt has
sentinels (`<extra_id_0>`) the result also says which fill belongs to which sentinel. A GLM with
2-D positions (GLM, ChatGLM-6B) continues it as the blank after it, the layout fill-blanks gives
`prompt [gMASK]` (families/glm.py continuation): what GLM pretraining teaches, where the 1-D prefix layout
of `plmlab.generate` gets only [eop]s from a pretrained GLM.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import PlmlabError
from ..families import family_of
from ..families.glm import continuation
from ..generation import TextStreamer, find_stop, fit_context, generate
from ..infill import BLANK_OPTIONS, answer_blank
from ..families.fits import Fits
from .base import Pipeline
from .loading import check_text
from .span_fills import sentinels_in, span_result

SAMPLING = ("temperature", "top_k", "top_p", "min_p")


def encode_prompt(model, tokenizer, prompt: str) -> list[int]:
    """The prompt's ids (BOS, or GPT-2's EOS, for an empty prompt), all inside the model's vocabulary."""
    ids = tokenizer.encode(check_text(prompt, "prompt"))
    if not ids:
        start = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
        if start is None:
            raise PlmlabError("the prompt is empty and the tokenizer has no BOS/EOS token to start from")
        ids = [start]
    vocab = model.config.vocab_size
    if max(ids) >= vocab:  # an embedding lookup past the table: an IndexError deep in the model
        raise PlmlabError(f"the prompt has token id {max(ids)} but the model has only {vocab} embeddings: "
                          "the tokenizer does not belong to this model")
    return ids


def decode_options(model, tokenizer, options: dict) -> dict:
    """Keyword arguments of plmlab.generate from a pipeline's options (EOS and padding resolved)."""
    config = model.config
    eos = config.eos_token_id if config.eos_token_id is not None else tokenizer.eos_id
    pad = next((p for p in (config.pad_token_id, tokenizer.pad_id, eos) if p is not None), None)
    do_sample = options["do_sample"]
    if do_sample is None:  # sampling as soon as a sampling option is given (--greedy: False)
        do_sample = any(options[k] is not None for k in SAMPLING)
    temperature = options["temperature"]
    return dict(
        max_new_tokens=options["max_new_tokens"], do_sample=do_sample,
        temperature=1.0 if temperature is None else temperature,
        top_k=options["top_k"], top_p=options["top_p"], min_p=options["min_p"],
        repetition_penalty=options["repetition_penalty"], no_repeat_ngram_size=options["no_repeat_ngram_size"],
        num_beams=options["num_beams"], length_penalty=options["length_penalty"],
        early_stopping=options["early_stopping"], eos_token_id=eos, pad_token_id=pad,
        stop=list(options["stop"]) or None, tokenizer=tokenizer, seed=options["seed"],
        truncate="left" if options["truncate_left"] else None,
    )


def finish(ids: list[int], tokenizer, eos: int | None, stops) -> tuple[str, list[int]]:
    """(text, ids) of one generated row: cut after EOS (not in the text) or at a stop string."""
    if eos is not None and eos in ids:
        ids = ids[:ids.index(eos) + 1]
        text = tokenizer.decode(ids[:-1])
    else:
        text = tokenizer.decode(ids)
    at = find_stop(text, stops)
    if at >= 0:
        text = text[:at]
        n = next(n for n in range(1, len(ids) + 1) if find_stop(tokenizer.decode(ids[:n]), stops) >= 0)
        ids = ids[:n]  # up to the token that completed the stop string; padding dropped
    return text, ids


class TextGeneration(Pipeline):
    task = "text-generation"
    defaults = dict(max_new_tokens=64, do_sample=None, temperature=None, top_k=None, top_p=None, min_p=None,
                    repetition_penalty=1.0, no_repeat_ngram_size=0, num_beams=1, length_penalty=1.0,
                    early_stopping=False, stop=(), seed=None, truncate_left=False)

    def check(self, model) -> None:
        if not family_of(model.config).generates:
            raise PlmlabError("an encoder-only model cannot generate text; use a decoder or encoder-decoder model")

    def run(self, texts: list[str], **options) -> list[dict]:
        kw = decode_options(self.model, self.tokenizer, options)
        if family_of(self.model.config).answers_as_blank:
            return [self._blank(p, part_a, kw) for p, part_a in zip(texts, self._parts_a(texts, kw))]
        rows = [encode_prompt(self.model, self.tokenizer, p) for p in texts]
        out = generate(self.model, rows, **kw).tolist()
        return [self._result(p, r, ids, kw) for p, r, ids in zip(texts, rows, out)]

    def _result(self, prompt: str, row: list[int], out: list[int], kw: dict) -> dict:
        text, ids = finish(out, self.tokenizer, kw["eos_token_id"], kw["stop"] or [])
        result = {"prompt": prompt, "text": text, "ids": ids}
        if not family_of(self.model.config).continues_prompt and sentinels_in(row, self.tokenizer):  # T5's fills
            result.update(span_result(row, ids, self.tokenizer))
        return result

    def stream(self, prompts: list[str], write: Callable[[str], object], echo: bool = True, **options) -> list[dict]:
        """Write each prompt's result as it is produced, one line each (a decoder's line starts
        with its prompt when `echo`); every prompt is checked first, so a bad one fails before
        anything is written. Each prompt is seeded alike. Returns the results."""
        opts = self._merge(self.options, options)
        kw = decode_options(self.model, self.tokenizer, opts)
        if kw["num_beams"] > 1:
            raise PlmlabError("beam search cannot stream: call the pipeline instead")
        if family_of(self.model.config).answers_as_blank:
            return self._stream_blanks(prompts, write, echo, kw)
        rows = [encode_prompt(self.model, self.tokenizer, p) for p in prompts]
        rows = fit_context(self.model.config, rows, kw["max_new_tokens"], kw["truncate"])
        decoder = family_of(self.model.config).continues_prompt
        results = []
        for prompt, row in zip(prompts, rows):
            if echo and decoder:
                write(prompt)
            if not decoder and sentinels_in(row, self.tokenizer):  # fills are shown whole, with their sentinels
                result = self._result(prompt, row, generate(self.model, [row], **kw)[0].tolist(), kw)
                write(result["text"])
            else:
                eos = kw["eos_token_id"]
                streamer = TextStreamer(self.tokenizer, write, stop=kw["stop"] or [],
                                        end_ids=[] if eos is None else [eos])
                out = generate(self.model, [row], streamer=streamer, **kw)[0].tolist()
                result = self._result(prompt, row, out, kw)
            write("\n")
            results.append(result)
        return results

    def _stream_blanks(self, prompts: list[str], write, echo: bool, kw: dict) -> list[dict]:
        results = []
        for prompt, part_a in zip(prompts, self._parts_a(prompts, kw)):  # every prompt checked first
            if echo:
                write(prompt)
            results.append(self._blank(prompt, part_a, kw, write))
            write("\n")
        return results

    def _parts_a(self, texts: list[str], kw: dict) -> list[list[int]]:
        """A 2-D GLM's Part A for each prompt (`[CLS] prompt [gMASK] <eos>`), within the context with
        the blank's <sop> and max_new_tokens; truncate='left' drops the oldest prompt tokens."""
        if kw["num_beams"] > 1:
            raise PlmlabError("a 2-D-position GLM continues a prompt by blank filling: beam search is not "
                              "supported; drop --num-beams")
        limit, parts = self.model.config.max_positions, []
        for text in texts:
            part_a, _ = continuation(self.tokenizer, check_text(text, "prompt"))
            excess = len(part_a) + 1 + kw["max_new_tokens"] - limit
            if excess > 0 and (kw["truncate"] != "left" or excess >= len(part_a) - 3):  # a prompt token stays
                raise PlmlabError(f"the prompt has {len(part_a) - 3} tokens; with [CLS] [gMASK] <eos> <sop> and "
                                  f"max_new_tokens={kw['max_new_tokens']} that exceeds the model's context of "
                                  f"{limit} positions; shorten it, lower max_new_tokens, or truncate it "
                                  "(truncate_left, --truncate-left)")
            parts.append(part_a[:1] + part_a[1 + max(excess, 0):])
        return parts

    def _blank(self, prompt: str, part_a: list[int], kw: dict, write=None) -> dict:
        """The continuation of one prompt as the blank at Part A's [gMASK] (its last but one token)."""
        generator = torch.Generator().manual_seed(kw["seed"]) if kw["seed"] is not None else None
        answer = answer_blank(self.model, self.tokenizer, part_a, len(part_a) - 2, write=write, generator=generator,
                              stop=kw["stop"] or [], **{k: kw[k] for k in BLANK_OPTIONS})
        return {"prompt": prompt, "text": answer.text, "ids": answer.ids}


class Text2Text(TextGeneration):
    """An encoder-decoder's answer to each input (T5's task prefixes, span filling)."""

    task = "text2text"

    def check(self, model) -> None:
        if not Fits(arch="encoder-decoder").fits(model.config):
            raise PlmlabError("text2text needs an encoder-decoder model (T5, BART), not this "
                              f"{model.config.arch}; use text-generation")
