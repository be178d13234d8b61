"""OpenAI's response objects, built from batch.RowResult: completions, chat completions, their
streamed chunks (server-sent events), and usage. Field names follow the API reference."""

from __future__ import annotations

import json
import time
import uuid


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def sse(obj) -> str:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_logprobs(entries: list[dict] | None, offset: int = 0) -> dict | None:
    """The completions API's logprobs: parallel arrays, text offsets counted from `offset`."""
    if entries is None:
        return None
    offsets, at = [], offset
    for e in entries:
        offsets.append(at)
        at += len(e["token"])
    return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [dict(e["top"]) for e in entries], "text_offset": offsets}


def chat_logprobs(entries: list[dict] | None) -> dict | None:
    """The chat API's logprobs: one object per token with its bytes and its alternatives."""
    if entries is None:
        return None

    def one(token: str, logprob: float) -> dict:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    return {"content": [{**one(e["token"], e["logprob"]), "top_logprobs": [one(t, v) for t, v in e["top"]]}
                        for e in entries]}


class Formatter:
    """Builds one endpoint's objects: `kind` is "completions" or "chat"."""

    def __init__(self, kind: str, model: str, echo: list[str] | None = None) -> None:
        self.kind, self.model = kind, model
        self.id = new_id("cmpl" if kind == "completions" else "chatcmpl")
        self.created = int(time.time())
        self.echo = echo  # completions' echo: each choice's text starts with its prompt

    def _head(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def _choice(self, index: int, text: str, result=None, prompt: str = "") -> dict:
        reason = None if result is None else result.finish_reason
        lp = None if result is None else result.logprobs
        if self.kind == "completions":
            return {"index": index, "text": prompt + text, "logprobs": completion_logprobs(lp, len(prompt)),
                    "finish_reason": reason}
        return {"index": index, "message": {"role": "assistant", "content": text},
                "logprobs": chat_logprobs(lp), "finish_reason": reason}

    def _prompt(self, index: int, n: int) -> str:
        return self.echo[index // n] if self.echo else ""

    def whole(self, results: list, n: int, prompt_tokens: int) -> dict:
        obj = "text_completion" if self.kind == "completions" else "chat.completion"
        choices = [self._choice(i, r.text, r, self._prompt(i, n)) for i, r in enumerate(results)]
        return {**self._head(obj), "choices": choices,
                "usage": usage(prompt_tokens, sum(len(r.tokens) for r in results))}

    def chunk(self, index: int, text: str | None = None, result=None, first: bool = False) -> dict:
        """One streamed piece of choice `index`: new text, or (with `result`) its finish."""
        if self.kind == "completions":
            choice = {"index": index, "text": text or "", "finish_reason": None, "logprobs": None}
            if result is not None:
                choice.update(finish_reason=result.finish_reason, logprobs=completion_logprobs(result.logprobs))
            return {**self._head("text_completion"), "choices": [choice]}
        delta = {} if text is None else {"content": text}
        if first:
            delta = {"role": "assistant", "content": ""}
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
        if result is not None:
            choice.update(finish_reason=result.finish_reason, logprobs=chat_logprobs(result.logprobs))
        return {**self._head("chat.completion.chunk"), "choices": [choice]}

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict:
        obj = "text_completion" if self.kind == "completions" else "chat.completion.chunk"
        return {**self._head(obj), "choices": [], "usage": usage(prompt_tokens, completion_tokens)}
