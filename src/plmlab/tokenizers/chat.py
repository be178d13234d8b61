"""Chat templates: the Jinja text a tokenizer carries in ``tokenizer_config.json["chat_template"]``,
rendered exactly as transformers' ``apply_chat_template`` renders it (a sandboxed, immutable
Jinja environment with ``trim_blocks``/``lstrip_blocks``, ``raise_exception``, ``messages``,
``add_generation_prompt`` and the named special tokens -- ``bos_token``, ``eos_token`` ... -- as
variables), then encoded without the style's added specials (``add_special_tokens=False``), as
transformers does. The template is data, not code: prompts are never hand-built.

Defaults per family (used when a tokenizer carries none; ``with_chat_template`` attaches one and
adds the tokens it writes as single special tokens):

=========== =========================================================================
gpt2, llama ChatML: ``<|im_start|>user\\nHI<|im_end|>\\n<|im_start|>assistant\\n``
glm         GLM-4's layout: ``[gMASK]<sop><|user|>\\nHI<|assistant|>\\n`` with this
            tokenizer's own ``[gMASK]`` and sop token; an assistant turn is closed by
            ``<|endoftext|>`` (GLM-4 stops on the next role token instead: closing the
            turn lets a single-turn example teach the model where to stop)
t5          plain text: ``user: HI\\nassistant:`` (the response is the decoder's target)
=========== =========================================================================

Which tokens carry loss (``encode_chat_for_training``): each assistant turn's text is what the
template adds between rendering the history up to it *with* the generation prompt and rendering
it *with* the turn; trailing whitespace (ChatML's newline) is left out, so the content and its
end-of-turn token (``<|im_end|>``, ``<|endoftext|>``) carry loss and the next role header does not.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from functools import lru_cache

import jinja2
import tokenizers as hf
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from plmlab.errors import PlmlabError
from plmlab.tokenizers.styles import ROLES, special_token
from plmlab.tokenizers.tokenizer import Tokenizer

CHAT_ROLES = ("system", "user", "assistant")
RENDER_SECONDS = 2.0  # a rendering that takes longer is stopped: a conversation renders in milliseconds
MAX_REPEAT = 1 << 20  # items a `*` repetition may make in a template

_CHATML = (
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + message['role']) }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

_GLM = (
    "{{ '[GMASK][SOP]' }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + message['role']) }}{% endif %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}")

_TEXT = (
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + message['role']) }}{% endif %}"
    "{{ message['role'] + ': ' + message['content'] + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}")

# style -> (template, the tokens it writes that must be single special tokens)
_DEFAULTS = {
    "gpt2": (_CHATML, ("<|im_start|>", "<|im_end|>")),
    "llama": (_CHATML, ("<|im_start|>", "<|im_end|>")),
    "glm": (_GLM, ("<|system|>", "<|user|>", "<|assistant|>")),
    "t5": (_TEXT, ()),
}


def default_chat_template(tokenizer) -> tuple[str, tuple[str, ...]] | None:
    """(template, tokens it needs) for the tokenizer's style, or None (encoder styles: no chat)."""
    if tokenizer.style not in _DEFAULTS:
        return None
    template, tokens = _DEFAULTS[tokenizer.style]
    if tokenizer.style == "glm":  # this tokenizer's own [gMASK] and sop tokens
        roles = tokenizer.special_tokens
        template = template.replace("[GMASK]", roles.get("gmask", "[gMASK]")).replace(
            "[SOP]", roles.get("sop", "<sop>"))
    return template, tokens


def chat_template(tokenizer) -> str | None:
    """The Jinja template the tokenizer carries, else its style's default (None: neither)."""
    carried = getattr(tokenizer, "chat_template", None)
    if carried:
        return carried
    default = default_chat_template(tokenizer)
    return default[0] if default else None


def with_chat_template(tokenizer, template: str | None = None):
    """The tokenizer carrying ``template`` (default: the one it carries, else its style's), with
    the special tokens the default template writes added where missing (new ids at the end of the
    vocabulary: a model's embedding table must then grow to ``tokenizer.vocab_size``)."""
    tokens: tuple[str, ...] = ()
    if template is None:
        template = getattr(tokenizer, "chat_template", None)
    if template is None:
        default = default_chat_template(tokenizer)
        if default is None:
            raise PlmlabError(f"a {tokenizer.style} tokenizer has no chat template; give one with --chat-template FILE")
        template, tokens = default
    backend = hf.Tokenizer.from_str(tokenizer.backend.to_str())  # a copy: the caller's stays as it was
    missing = [t for t in tokens if backend.token_to_id(t) is None]
    if missing:
        backend.add_special_tokens([special_token(t) for t in missing])
    roles = {**tokenizer.special_tokens, **{t: t for t in tokens if t not in tokenizer.special_tokens.values()}}
    return Tokenizer(backend, tokenizer.style, roles, tokenizer.model_max_length, tokenizer.options,
                     chat_template=template)


def read_chat_template(path: str | os.PathLike) -> str:
    """A template file given with --chat-template: Jinja text, or a tokenizer_config.json's."""
    try:
        text = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as e:
        raise PlmlabError(f"cannot read chat template {path}: {getattr(e, 'strerror', None) or e}") from None
    if str(path).endswith(".json"):
        try:
            text = json.loads(text)["chat_template"]
        except (ValueError, KeyError, TypeError):
            raise PlmlabError(f"{path}: no \"chat_template\" string in it") from None
    if not isinstance(text, str) or not text.strip():
        raise PlmlabError(f"chat template {path} is empty")
    _compile(text, str(path))
    return text


def check_messages(messages) -> list[dict]:
    """``messages`` as a list of {role, content} strings with known roles, or one line why not."""
    if not isinstance(messages, list) or not messages:
        raise PlmlabError("messages must be a non-empty list of {\"role\", \"content\"} objects")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise PlmlabError(f"message {i} is not a {{\"role\": str, \"content\": str}} object")
        if m["role"] not in CHAT_ROLES:
            raise PlmlabError(f"message {i}: unknown role {m['role']!r}; roles are {', '.join(CHAT_ROLES)}")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def render_chat(tokenizer, messages, add_generation_prompt: bool = True) -> str:
    """The conversation as the tokenizer's chat template writes it (transformers' tokenize=False)."""
    messages = check_messages(messages)
    template = chat_template(tokenizer)
    if template is None:
        raise PlmlabError(f"this {tokenizer.style} tokenizer has no chat template; give one with --chat-template FILE")
    variables = {f"{r}_token": t for r, t in tokenizer.special_tokens.items() if r in ROLES}
    compiled = _compile(template, "the chat template")
    try:
        with _deadline(RENDER_SECONDS):
            return compiled.render(messages=messages, tools=None, documents=None,
                                   add_generation_prompt=add_generation_prompt, **variables)
    except _TooSlow:
        raise PlmlabError(f"the chat template did not finish rendering within {RENDER_SECONDS:g} s "
                          "(a loop that runs too long?)") from None
    except jinja2.TemplateError as e:
        raise PlmlabError(f"the chat template failed to render: {_line(e)}") from None
    except (Exception, RecursionError) as e:  # a template is untrusted text: any error it reaches is its own
        raise PlmlabError(f"the chat template failed to render: {type(e).__name__}: {_line(e)}") from None


def encode_chat(tokenizer, messages, add_generation_prompt: bool = True) -> list[int]:
    """Ids of the rendered conversation (transformers' apply_chat_template, tokenize=True)."""
    text = render_chat(tokenizer, messages, add_generation_prompt)
    _check_single_tokens(tokenizer)
    return tokenizer.encode(text, add_special_tokens=False)


def assistant_spans(tokenizer, messages) -> tuple[str, list[tuple[int, int]]]:
    """(the whole rendering, character spans of each assistant turn's content + end-of-turn)."""
    messages = check_messages(messages)
    full = render_chat(tokenizer, messages, add_generation_prompt=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render_chat(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        through = render_chat(tokenizer, messages[:i + 1], add_generation_prompt=False)
        if not (through.startswith(before) and full.startswith(through)):
            raise PlmlabError("the chat template does not render a conversation as its turns in order, "
                              "so the assistant tokens cannot be found")
        end = len(through.rstrip())
        spans.append((len(before), max(end, len(before))))
    return full, spans


def encode_chat_for_training(tokenizer, messages) -> tuple[list[int], list[bool]]:
    """(ids of the whole conversation, per id: does it carry loss -- an assistant turn's content
    or its end-of-turn token). A token carries loss when it overlaps an assistant span."""
    full, spans = assistant_spans(tokenizer, messages)
    if not spans:
        raise PlmlabError("a conversation has no assistant turn: nothing to learn from")
    _check_single_tokens(tokenizer)
    encoding = tokenizer.backend.encode(full, add_special_tokens=False)
    flags, k = [], 0
    for start, end in encoding.offsets:
        while k < len(spans) and start >= spans[k][1]:
            k += 1
        flags.append(k < len(spans) and end > spans[k][0] and end > start)
    return list(encoding.ids), flags


def chat_usable(tokenizer) -> bool:
    """Does the tokenizer render chats as `plmlab chat` would: a template it carries, or its style's
    default when the vocabulary already has the tokens that default writes (a tokenizer that was
    only pretrained has no <|im_start|>: no chat until `plmlab sft` adds them)?"""
    if chat_template(tokenizer) is None:
        return False
    try:
        encode_chat(tokenizer, [{"role": "user", "content": "hi"}], add_generation_prompt=True)
    except PlmlabError:
        return False
    return True


def end_of_turn_id(tokenizer) -> int | None:
    """The special token that closes an assistant turn (``<|im_end|>``, ``<|endoftext|>``): the
    last loss-carrying id of a probe conversation, if it is a special token; else None (the
    template closes turns with plain text). Generation stops on it."""
    ids, flags = encode_chat_for_training(tokenizer, [{"role": "user", "content": "hi"},
                                                      {"role": "assistant", "content": "ok"}])
    learned = [i for i, f in zip(ids, flags) if f]
    last = learned[-1] if learned else None
    return last if last is not None and last in tokenizer.special_ids.values() else None


def _check_single_tokens(tokenizer) -> None:
    """The default template's markers must be single tokens, or the ids would be silently wrong."""
    if getattr(tokenizer, "chat_template", None):
        return
    default = default_chat_template(tokenizer)
    missing = [t for t in (default[1] if default else ()) if tokenizer.token_to_id(t) is None]
    if missing:
        raise PlmlabError(f"the tokenizer has no {', '.join(missing)} token(s) that its default chat template "
                          "writes; fine-tune with `plmlab sft` first (it adds them)")


def _line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


class _TooSlow(BaseException):
    """Raised inside a rendering that ran past its time (BaseException: no template's code catches it)."""


@contextmanager
def _deadline(seconds: float):
    """Stop a template's rendering after `seconds`. Jinja compiles a template to Python, so a
    line tracer on the rendering thread can stop any loop of it (the sandbox bounds range() but
    not loops nested in loops). The clock is read every 256 lines: cheap next to the rendering."""
    end, lines = time.monotonic() + seconds, 0

    def on_line(frame, event, arg):
        nonlocal lines
        lines += 1
        if not lines & 255 and time.monotonic() > end:
            raise _TooSlow
        return on_line

    previous = sys.gettrace()
    sys.settrace(lambda frame, event, arg: on_line)
    try:
        yield
    finally:
        sys.settrace(previous)


class _Sandbox(ImmutableSandboxedEnvironment):
    """transformers' sandbox, plus bounds on the two operators that can allocate without a loop:
    `'x' * 10**10` and `9 ** 10**9` would otherwise exhaust memory or hang inside one C call."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, int) and abs(right) > 4096:
            raise jinja2.exceptions.SecurityError(f"exponent {right} is too large")
        if operator == "*" and {type(left), type(right)} & {str, list, tuple}:
            count = right if isinstance(right, int) else left if isinstance(left, int) else 0
            size = len(left) if not isinstance(left, int) else len(right) if not isinstance(right, int) else 0
            if count * size > MAX_REPEAT:
                raise jinja2.exceptions.SecurityError(f"repetition to {count * size:,} items is too large")
        return super().call_binop(context, operator, left, right)


@lru_cache(maxsize=16)
def _compiled(template: str):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # as transformers: Jinja's own tojson escapes HTML characters
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = _Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def _compile(template: str, where: str):
    try:
        return _compiled(template)
    except jinja2.TemplateError as e:
        raise PlmlabError(f"{where} is not a valid Jinja template: {_line(e)}") from None
