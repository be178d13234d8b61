"""chat: a conversation in, the assistant's next turn out, through the tokenizer's chat template.

    chat = plmlab.pipelines.chat.Chat(model, tokenizer)        # or pipeline("chat", model=DIR)
    chat([{"role": "user", "content": "What does str.split do?"}])   # {"text", "ids", "dropped"}
    session = chat.session(system="Be brief.")
    session.send("hi", write=print)      # streamed; the history grows by the user and assistant turns

The history is rendered whole every turn (the template is data: prompts are never hand-built);
generation stops at the template's end-of-turn token or the tokenizer's EOS. A decoder reads the
rendering; an encoder-decoder (T5) reads it as its input (with </s>) and answers in the decoder.
When the history outgrows the context (prompt + ``max_new_tokens`` over the model's positions),
the oldest user/assistant turns are dropped -- the system message stays -- and the result says how
many (``dropped``); a latest user turn that alone does not fit is refused (one line).
A GLM with 2-D positions (GLM, ChatGLM-6B) answers as the blank after the conversation, the layout
SFT trains it in (pipelines/glm_chat.py, which serve and evaluate call too).
"""

from __future__ import annotations

from typing import Callable

from ..errors import PlmlabError
from ..generation import TextStreamer, find_stop, generate
from ..objectives.glm_layout import glm_prompt
from ..tokenizers.chat import chat_template, check_messages, encode_chat, end_of_turn_id
from .base import Pipeline
from .glm_chat import BLANK_OPTIONS, answer_blank, answers_as_blank
from .text_generation import TextGeneration, decode_options


class Chat(Pipeline):
    task = "chat"
    defaults = {**TextGeneration.defaults, "max_new_tokens": 128}

    def check(self, model) -> None:
        if model.config.arch == "encoder":
            raise PlmlabError("an encoder-only model cannot chat; use a decoder or encoder-decoder model")
        if chat_template(self.tokenizer) is None:
            raise PlmlabError(f"this {self.tokenizer.style} tokenizer has no chat template "
                              "(fine-tune with `plmlab sft`, which saves one)")

    def __call__(self, inputs, **options):
        """One conversation (a list of messages, or a user text) -> one reply; a list of
        conversations -> a list of replies."""
        opts = self._merge(self.options, options)
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], dict)):
            return self.run([inputs], **opts)[0]
        return self.run(list(inputs), **opts)

    def run(self, conversations: list, **options) -> list[dict]:
        return [self.reply(c, **options) for c in conversations]

    def reply(self, messages, write: Callable[[str], object] | None = None, **options) -> dict:
        """The assistant's next turn: {"text", "ids", "dropped" (oldest turns left out to fit)},
        streamed to ``write`` as it is produced when given (beam search cannot stream)."""
        opts = self._merge(self.options, options)
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        messages = check_messages(messages)
        kw = decode_options(self.model, self.tokenizer, opts)
        ends = self._end_ids(kw["eos_token_id"])
        kw["eos_token_id"] = ends or None
        if answers_as_blank(self.model):  # GLM, ChatGLM-6B: the answer is a blank
            return self._glm_reply(messages, kw, write)
        row, dropped = self._fit(messages, kw["max_new_tokens"])
        streamer = None
        if write is not None:
            if kw["num_beams"] > 1:
                raise PlmlabError("beam search cannot stream: call the pipeline without write")
            streamer = TextStreamer(self.tokenizer, write, stop=kw["stop"] or [], end_ids=ends)
        out = generate(self.model, [row], streamer=streamer, **kw)[0].tolist()
        ids = _until(out, ends)
        text = self.tokenizer.decode(ids)
        return {"text": _cut(text, kw["stop"] or []), "ids": ids, "dropped": dropped}

    def _glm_reply(self, messages: list[dict], kw: dict, write) -> dict:
        """A 2-D-position GLM answers as the blank after the conversation, in the layout SFT trains
        (finetune/sft_glm.py: `prompt [gMASK] | <sop> answer <eop>`): pipelines/glm_chat.py, the one
        home of that answer (serve and evaluate call it too)."""
        import torch

        if kw["num_beams"] > 1:
            raise PlmlabError("a 2-D-position GLM answers by blank filling: beam search is not supported; drop --num-beams")
        part_a, mask_at = glm_prompt(self.tokenizer, messages)
        generator = torch.Generator().manual_seed(kw["seed"]) if kw["seed"] is not None else None
        answer = answer_blank(self.model, self.tokenizer, part_a, mask_at, write=write, generator=generator,
                              **{k: kw[k] for k in BLANK_OPTIONS}, stop=kw["stop"] or [])
        return {"text": answer.text, "ids": answer.ids, "dropped": 0}

    def session(self, system: str | None = None) -> "ChatSession":
        return ChatSession(self, system)

    def _end_ids(self, eos) -> list[int]:
        ends = [end_of_turn_id(self.tokenizer), *(eos if isinstance(eos, list) else [eos]), self.tokenizer.eos_id]
        return list(dict.fromkeys(i for i in ends if i is not None))

    def _fit(self, messages: list[dict], max_new: int) -> tuple[list[int], int]:
        """(the prompt ids, turns dropped): the oldest non-system turns go until prompt + max_new fit."""
        limit = self.model.config.max_positions
        encoder_decoder = self.model.config.arch == "encoder-decoder"
        dropped = 0
        while True:
            ids = encode_chat(self.tokenizer, messages, add_generation_prompt=True)
            if encoder_decoder:
                ids = ids + [self.tokenizer.eos_id]  # T5's input ends with </s>, as in SFT
            needed = len(ids) if encoder_decoder else len(ids) + max_new
            if needed <= limit and max_new <= limit:
                return ids, dropped
            older = [i for i, m in enumerate(messages[:-1]) if m["role"] != "system"]
            if not older:
                raise PlmlabError(f"the last message needs {needed} positions with max_new_tokens={max_new}, more "
                                  f"than the model's context of {limit}; shorten it or lower max_new_tokens")
            messages = messages[:older[0]] + messages[older[0] + 1:]
            dropped += 1


class ChatSession:
    """A multi-turn conversation: the history, /reset, /system."""

    def __init__(self, chat: Chat, system: str | None = None) -> None:
        self.chat, self.system, self.history = chat, system, []

    def messages(self) -> list[dict]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history

    def reset(self) -> None:
        self.history = []

    def set_system(self, text: str | None) -> None:
        self.system = text or None

    def send(self, text: str, write: Callable[[str], object] | None = None, **options) -> dict:
        """Add the user's turn, generate the assistant's, keep both (minus what had to be dropped)."""
        self.history.append({"role": "user", "content": text})
        try:
            result = self.chat.reply(self.messages(), write=write, **options)
        except PlmlabError:
            self.history.pop()  # a refused turn leaves the history as it was
            raise
        self.history = self.history[result["dropped"]:]
        self.history.append({"role": "assistant", "content": result["text"]})
        return result


def _until(ids: list[int], ends: list[int]) -> list[int]:
    cut = next((i for i, t in enumerate(ids) if t in ends), len(ids))
    return ids[:cut]


def _cut(text: str, stops) -> str:
    at = find_stop(text, stops)
    return text[:at] if at >= 0 else text
