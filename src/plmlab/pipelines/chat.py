"""chat: a conversation in, the assistant's next turn out, through the tokenizer's chat template.

    chat = plmlab.pipelines.chat.Chat(model, tokenizer)        # or pipeline("chat", model=DIR)
    chat([{"role": "user", "content": "What does str.split do?"}])   # {"text", "ids", "dropped"}
    session = chat.session(system="Be brief.")
    session.send("hi", write=print)      # streamed; the history grows by the user and assistant turns

The history is rendered whole every turn (the template is data: prompts are never hand-built);
generation stops at the template's end-of-turn token or the tokenizer's EOS. A decoder reads the
rendering; an encoder-decoder (T5) reads it as its input (with </s>) and answers in the decoder.
``max_new_tokens`` is an upper bound: the answer gets what the context leaves after the prompt,
up to it (as serve caps max_tokens). The oldest exchanges (a user turn and its answer; the system
message stays) are dropped only while the answer would get fewer than
``min(max_new_tokens, context // 4)`` positions: a long history does not starve the answer, and a
small context is not emptied for an answer that may be short. The result says how many turns went
(``dropped``), and ``on_drop`` hears it before the answer is generated; a latest user turn that
alone leaves no room is refused (one line).
A GLM with 2-D positions (GLM, ChatGLM-6B) answers as the blank after the conversation, the layout
SFT trains it in (plmlab.infill.answer_blank, which serve and evaluate call too).
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import PlmlabError
from ..families import family_of
from ..generation import TextStreamer, find_stop, generate
from ..infill import BLANK_OPTIONS, answer_blank
from ..tokenizers.chat import chat_template, check_messages, end_of_turn_id
from .base import Pipeline
from .text_generation import TextGeneration, decode_options


class Chat(Pipeline):
    task = "chat"
    defaults = {**TextGeneration.defaults, "max_new_tokens": 128}

    def check(self, model) -> None:
        if not family_of(model.config).generates:
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

    def reply(self, messages, write: Callable[[str], object] | None = None,
              on_drop: Callable[[int], object] | None = None, **options) -> dict:
        """The assistant's next turn: {"text", "ids", "dropped" (oldest turns left out to fit)},
        streamed to ``write`` as it is produced when given (beam search cannot stream);
        ``on_drop(n)`` is called before generating when n > 0 turns had to go."""
        opts = self._merge(self.options, options)
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        messages = check_messages(messages)
        kw = decode_options(self.model, self.tokenizer, opts)
        ends = self._end_ids(kw["eos_token_id"])
        kw["eos_token_id"] = ends or None
        blank = family_of(self.model.config).answers_as_blank  # GLM, ChatGLM-6B: the answer is a blank
        if kw["num_beams"] > 1 and blank:
            raise PlmlabError("a 2-D-position GLM answers by blank filling: beam search is not supported; "
                              "drop --num-beams")
        if kw["num_beams"] > 1 and write is not None:
            raise PlmlabError("beam search cannot stream: call the pipeline without write")
        row, kw["max_new_tokens"], dropped = self._fit(messages, kw["max_new_tokens"])
        if dropped and on_drop is not None:
            on_drop(dropped)
        if blank:
            return {**self._glm_reply(row, kw, write), "dropped": dropped}
        streamer = None if write is None else TextStreamer(self.tokenizer, write, stop=kw["stop"] or [], end_ids=ends)
        out = generate(self.model, [row], streamer=streamer, **kw)[0].tolist()
        ids = _until(out, ends)
        text = self.tokenizer.decode(ids)
        return {"text": _cut(text, kw["stop"] or []), "ids": ids, "dropped": dropped}

    def _glm_reply(self, part_a: list[int], kw: dict, write) -> dict:
        """A 2-D-position GLM answers as the blank after the conversation (Part A ends in its
        [gMASK]), in the layout SFT trains (families/glm.py: `prompt [gMASK] | <sop> answer
        <eop>`): plmlab.infill.answer_blank, the one home of that answer (serve and evaluate call it too)."""
        generator = torch.Generator().manual_seed(kw["seed"]) if kw["seed"] is not None else None
        answer = answer_blank(self.model, self.tokenizer, part_a, len(part_a) - 1, write=write, generator=generator,
                              **{k: kw[k] for k in BLANK_OPTIONS}, stop=kw["stop"] or [])
        return {"text": answer.text, "ids": answer.ids}

    def session(self, system: str | None = None) -> "ChatSession":
        return ChatSession(self, system)

    def _end_ids(self, eos) -> list[int]:
        ends = [end_of_turn_id(self.tokenizer), *(eos if isinstance(eos, list) else [eos]), self.tokenizer.eos_id]
        return list(dict.fromkeys(i for i in ends if i is not None))

    def _fit(self, messages: list[dict], max_new: int) -> tuple[list[int], int, int]:
        """(the prompt ids, the answer's max_new_tokens, turns dropped): the answer gets what the
        context leaves, up to max_new; the oldest exchanges (user turn and answer; never the system
        message) go only while that is under min(max_new, context // 4) (see the module docstring)."""
        limit = self.model.config.max_positions
        wanted = max(1, min(max_new, limit // 4))
        dropped = 0
        while True:
            ids = self._prompt(messages)
            room = family_of(self.model.config).answer_room(len(ids), limit)  # 0 or less: none
            older = [i for i, m in enumerate(messages[:-1]) if m["role"] != "system"]
            if room >= wanted or (room >= 1 and not older):
                return ids, min(max_new, room), dropped
            if not older:
                raise PlmlabError(f"the last message needs {len(ids)} positions, which leaves no room for an answer "
                                  f"in the model's context of {limit}; shorten it")
            # the oldest exchange goes whole: a conversation never starts with an orphaned answer
            end = next((i for i in older[1:] if messages[i]["role"] == "user"), len(messages) - 1)
            messages = messages[:older[0]] + messages[end:]
            dropped += end - older[0]

    def _prompt(self, messages: list[dict]) -> list[int]:
        """What the model reads: the rendering with the generation prompt; T5's ends with </s> (as
        in SFT); a 2-D GLM's is Part A, ending in the answer's [gMASK]."""
        return family_of(self.model.config).chat_prompt(self.tokenizer, messages)


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

    def send(self, text: str, write: Callable[[str], object] | None = None,
             on_drop: Callable[[int], object] | None = None, **options) -> dict:
        """Add the user's turn, generate the assistant's, keep both (minus what had to be dropped;
        ``on_drop(n)`` hears of that before the answer comes)."""
        self.history.append({"role": "user", "content": text})
        try:
            result = self.chat.reply(self.messages(), write=write, on_drop=on_drop, **options)
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
