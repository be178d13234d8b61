"""Checking a request body before the model sees anything: every mistake is an `ApiError`
(a 4xx with OpenAI's error body), never an exception deep in the model.

A schema is a table field -> `Field(check, default)`; a check is a small function of
(name, value) that returns the value (normalised) or raises ApiError. The tables follow OpenAI's
API reference: unknown fields are refused (as OpenAI does: "Unrecognized request argument"),
types are strict (a bool is not an int, a string is not a number), numbers are finite.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable

MAX_N = 16  # choices per request: each is a row of the batch
MAX_STOP = 4  # OpenAI's limit on stop strings
MAX_PROMPTS = 16  # prompts in one completions request
MAX_TOP_LOGPROBS = {"completions": 5, "chat": 20}


class ApiError(Exception):
    """A client mistake: HTTP `status` with {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 type: str = "invalid_request_error", code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message, self.param, self.status, self.type, self.code = message, param, status, type, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def parse_body(raw: bytes) -> dict:
    """A JSON object from raw bytes: strict UTF-8, no NaN/Infinity (Python's json takes them)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(f"the request body is not valid UTF-8 (byte {e.start})", code="invalid_utf8") from None
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise ApiError(f"the request body is not valid JSON: {str(e).splitlines()[0][:200]}",
                       code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(f"the request body must be a JSON object, got {_kind(body)}", code="invalid_json")
    return body


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


@dataclass(frozen=True)
class Field:
    check: Callable[[str, Any], Any]
    default: Any = None
    required: bool = False


def validate(body: dict, schema: dict[str, Field]) -> dict:
    """Every field of `schema`, checked or defaulted; an unknown field or a missing required one
    is an error. A JSON null is the default (OpenAI's clients send null for "not given")."""
    unknown = sorted(set(body) - set(schema))
    if unknown:
        raise ApiError(f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0],
                       code="unknown_parameter")
    out = {}
    for name, field in schema.items():
        value = body.get(name)
        if value is None:
            if field.required:
                raise ApiError(f"missing required parameter: {name!r}", param=name, code="missing_required_parameter")
            out[name] = field.default
        else:
            out[name] = field.check(name, value)
    return out


def _kind(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def _fail(name: str, message: str, code: str = "invalid_value"):
    raise ApiError(f"{name!r}: {message}", param=name, code=code)


def _type(name: str, value, types: tuple, what: str):
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        _fail(name, f"expected {what}, got {_kind(value)}", "invalid_type")
    return value


def integer(lo: int, hi: int) -> Callable:
    def check(name, value):
        if isinstance(value, float) and value.is_integer() and not isinstance(value, bool):
            value = int(value)  # 16.0 is JSON's 16 for many clients
        _type(name, value, (int,), "an integer")
        if not lo <= value <= hi:
            _fail(name, f"must be between {lo} and {hi}, got {value}")
        return value
    return check


def number(lo: float, hi: float, open_lo: bool = False) -> Callable:
    def check(name, value):
        _type(name, value, (int, float), "a number")
        value = float(value)
        if not math.isfinite(value) or value < lo or value > hi or (open_lo and value == lo):
            _fail(name, f"must be in {'(' if open_lo else '['}{lo}, {hi}], got {value}")
        return value
    return check


def boolean(name, value):
    return _type(name, value, (bool,), "a boolean")


def string(name, value):
    return _type(name, value, (str,), "a string")


def zero_only(name, value):
    """A penalty OpenAI accepts that plmlab does not implement: only its neutral value 0."""
    value = number(-2.0, 2.0)(name, value)
    if value != 0:
        _fail(name, "is not supported by this server (only 0)", "unsupported_parameter")
    return value


def stop_strings(name, value):
    stops = [value] if isinstance(value, str) else value
    _type(name, stops, (list,), "a string or an array of strings")
    if len(stops) > MAX_STOP:
        _fail(name, f"at most {MAX_STOP} stop strings, got {len(stops)}")
    for s in stops:
        _type(name, s, (str,), "a string or an array of strings")
        if not s:
            _fail(name, "a stop string is empty")
    return list(stops)


def stream_options(name, value):
    _type(name, value, (dict,), "an object")
    return validate(value, {"include_usage": Field(boolean, False)})


def seed(name, value):
    return integer(-(2**63), 2**63 - 1)(name, value) % 2**63  # torch seeds are in [0, 2**63)


def _token_ids(name, value) -> list[int]:
    if not value:
        _fail(name, "a prompt of token ids is empty", "empty_prompt")
    for t in value:
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            _fail(name, "token ids must be non-negative integers", "invalid_type")
    return list(value)


def prompts(name, value) -> list:
    """A completions prompt: a string, token ids, or an array of either; -> list of str | list[int]."""
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, list) and value and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        items = [_token_ids(name, value)]
    elif isinstance(value, list):
        items = value
    else:
        _fail(name, f"expected a string, an array of strings or token ids, got {_kind(value)}", "invalid_type")
    if not items:
        _fail(name, "no prompt given", "empty_prompt")
    if len(items) > MAX_PROMPTS:
        _fail(name, f"at most {MAX_PROMPTS} prompts per request, got {len(items)}")
    out = []
    for item in items:
        if isinstance(item, list):
            out.append(_token_ids(name, item))
        elif isinstance(item, str):
            out.append(nonempty_text(name, item))
        else:
            _fail(name, f"expected a string or an array of token ids, got {_kind(item)}", "invalid_type")
    return out


def utf8(name, value: str) -> str:
    """JSON's \\ud800 escapes decode to lone surrogates, which no tokenizer can encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        _fail(name, f"not valid UTF-8 (a lone surrogate at character {e.start})", "invalid_utf8")
    return value


def nonempty_text(name, value):
    if not utf8(name, string(name, value)):
        _fail(name, "is empty", "empty_prompt")
    return value


def texts(name, value) -> list[str]:
    """One text or an array of 1..MAX_PROMPTS texts (fill-mask, fill-blanks, text2text, classify)."""
    items = [value] if isinstance(value, str) else value
    _type(name, items, (list,), "a string or an array of strings")
    if not items or len(items) > MAX_PROMPTS:
        _fail(name, f"give 1 to {MAX_PROMPTS} texts, got {len(items)}")
    return [nonempty_text(name, t) for t in items]


def messages(name, value) -> list[dict]:
    """Chat messages: [{"role", "content"}], content a string or an array of text parts."""
    _type(name, value, (list,), "an array of messages")
    if not value:
        _fail(name, "no messages given", "empty_prompt")
    out = []
    for i, m in enumerate(value):
        where = f"{name}[{i}]"
        _type(where, m, (dict,), "an object")
        m = validate(m, MESSAGE)
        if m["role"] not in ROLES:
            _fail(f"{where}.role", f"must be one of {', '.join(ROLES)}, got {m['role']!r}")
        content = m["content"]
        if isinstance(content, list):  # [{"type": "text", "text": ...}]
            parts = [validate(_type(f"{where}.content", p, (dict,), "an object"), TEXT_PART) for p in content]
            if any(p["type"] != "text" for p in parts):
                _fail(f"{where}.content", "only text parts are supported")
            content = "".join(p["text"] for p in parts)
        out.append({k: v for k, v in {**m, "content": utf8(f"{where}.content", content)}.items() if v is not None})
    return out


def _content(name, value):
    if isinstance(value, list):
        return value
    return string(name, value)


ROLES = ("system", "user", "assistant", "tool", "developer")
MESSAGE = {"role": Field(string, required=True), "content": Field(_content, required=True), "name": Field(string)}
TEXT_PART = {"type": Field(string, required=True), "text": Field(string, required=True)}

SAMPLING = {
    "temperature": Field(number(0.0, 2.0), 1.0),
    "top_p": Field(number(0.0, 1.0, open_lo=True), 1.0),
    "top_k": Field(integer(-1, 2**31 - 1), -1),  # vLLM's extension; -1 (or 0): off
    "n": Field(integer(1, MAX_N), 1),
    "stop": Field(stop_strings, []),
    "seed": Field(seed),
    "stream": Field(boolean, False),
    "stream_options": Field(stream_options),
    "presence_penalty": Field(zero_only, 0.0),
    "frequency_penalty": Field(zero_only, 0.0),
    "user": Field(string),
    "model": Field(string),
}
MAX_TOKENS_LIMIT = 2**20  # past any context: the context check then names both numbers

COMPLETIONS = {**SAMPLING, "prompt": Field(prompts, required=True),
               "max_tokens": Field(integer(1, MAX_TOKENS_LIMIT), 16),
               "logprobs": Field(integer(0, MAX_TOP_LOGPROBS["completions"])),
               "echo": Field(boolean, False)}
CHAT = {**SAMPLING, "messages": Field(messages, required=True),
        "max_tokens": Field(integer(1, MAX_TOKENS_LIMIT)),
        "max_completion_tokens": Field(integer(1, MAX_TOKENS_LIMIT)),
        "logprobs": Field(boolean, False),
        "top_logprobs": Field(integer(0, MAX_TOP_LOGPROBS["chat"]))}
TEXT2TEXT = {**{k: SAMPLING[k] for k in ("top_p", "top_k", "seed", "model", "user")},
             "temperature": Field(number(0.0, 2.0), 0.0),  # an answer, not a story: greedy unless asked
             "input": Field(texts, required=True), "max_tokens": Field(integer(1, MAX_TOKENS_LIMIT), 64)}
FILL_BLANKS = {**{k: SAMPLING[k] for k in ("top_p", "top_k", "seed", "model", "user")},
               "temperature": Field(number(0.0, 2.0), 0.0),  # greedy unless asked, as the pipeline
               "input": Field(texts, required=True), "max_tokens": Field(integer(1, MAX_TOKENS_LIMIT), 32)}
FILL_MASK = {"input": Field(texts, required=True), "top_k": Field(integer(1, 100), 5), "model": Field(string)}
CLASSIFY = {"input": Field(texts, required=True), "model": Field(string)}
