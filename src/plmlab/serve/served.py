"""The model behind the server: what it can do (its endpoints), its card, and the checks that
turn a request into token ids that fit its context -- all before the worker sees the request."""

from __future__ import annotations

from pathlib import Path

from ..errors import PlmlabError
from ..families import family_of
from ..families.glm import continuation, prepare
from ..generation import context_limit, prepare_for_decoding
from ..modeling import count_parameters
from ..pipelines import encode_prompt, load_model_and_tokenizer
from ..tokenizers.chat import chat_template, encode_chat
from .validation import ApiError

# task -> what a model needs to do it, said to a client that asks for it anyway
NEEDS = {
    "completions": "a decoder model (GPT, LLaMA, GLM) with an LM head",
    "chat": "a decoder model with a chat template",
    "text2text": "an encoder-decoder model (T5)",
    "fill-mask": "an encoder model (BERT, RoBERTa, ALBERT) with an MLM head",
    "fill-blanks": "a GLM blank-infilling model (a decoder with an LM head, 2-D positions and a GLM tokenizer)",
    "classify": "a model fine-tuned as a classifier (`plmlab finetune --task classification`)",
}


def releasing_gil(tokenizer):
    """The tokenizer, its `encode` letting other threads run: the `tokenizers` library's `encode`
    holds the GIL for its whole run (~1.5 s for 1 MB of text), which would stop the event loop
    however many threads checked requests; `encode_batch_fast` of one text gives the same ids
    and lets go of it. (An attribute of this instance: the model's server owns it.)"""
    backend = tokenizer.backend
    tokenizer.encode = lambda text, add_special_tokens=True: \
        backend.encode_batch_fast([text], add_special_tokens=add_special_tokens)[0].ids
    return tokenizer


class ServedModel:
    def __init__(self, model, tokenizer, name: str) -> None:
        self.model, self.tokenizer, self.name = model, releasing_gil(tokenizer), name
        config = model.config
        self.config = config
        self.context = context_limit(config) or config.max_positions
        self.eos = config.eos_token_id if config.eos_token_id is not None else tokenizer.eos_id
        self.pad = next((p for p in (config.pad_token_id, tokenizer.pad_id, self.eos) if p is not None), None)
        self.tasks = self._tasks()

    @classmethod
    def load(cls, model_dir, tokenizer_dir=None, device: str = "cpu", name: str | None = None,
             quantize: str | None = None) -> "ServedModel":
        model, tokenizer = load_model_and_tokenizer(model_dir, tokenizer_dir, device)
        return cls(prepare_for_decoding(model, quantize), tokenizer, name or Path(model_dir).resolve().name)

    def _tasks(self) -> list[str]:
        c, lm = self.config, getattr(self.model, "head", None) is not None and self.config.head != "mlm"
        if getattr(c, "classifier", "none") != "none":
            return ["classify"]
        if c.arch == "decoder" and lm:
            return ["completions"] + (["chat"] if self.chat_template() else []) + \
                (["fill-blanks"] if self.glm_tokens() is not None else [])
        if c.arch == "encoder-decoder" and lm:
            return ["text2text"]
        if c.arch == "encoder" and c.head == "mlm":
            return ["fill-mask"]
        return []

    def require(self, task: str) -> None:
        if task not in self.tasks:
            if task == "chat" and "completions" in self.tasks:
                raise ApiError("model has no chat template: use /v1/completions, or give the tokenizer one "
                               "(tokenizer_config.json's chat_template)", param="messages", code="no_chat_template")
            can = ", ".join(self.tasks) or "nothing this server offers"
            raise ApiError(f"this model cannot do {task}: it needs {NEEDS[task]}; this one does {can}",
                           param="model", code="unsupported_task")

    def check_name(self, name: str | None) -> None:
        if name is not None and name != self.name:
            raise ApiError(f"the model {name!r} does not exist; this server serves {self.name!r}", param="model",
                           status=404, code="model_not_found")

    def chat_template(self) -> str | None:
        """The template chat requests go through: the tokenizer's own, or its style's default when
        the tokenizer already has the tokens that default writes (else None: no chat)."""
        template = chat_template(self.tokenizer)
        if template is None:
            return None
        try:  # a default template whose markers (<|im_start|>, ...) this vocabulary lacks cannot be used
            encode_chat(self.tokenizer, [{"role": "user", "content": "hi"}], add_generation_prompt=True)
        except PlmlabError:
            return None
        return template

    def glm_tokens(self):
        """GLM's special ids where this model fills blanks (2-D positions, a GLM tokenizer), else None."""
        try:
            return family_of(self.config).blank_tokens(self.tokenizer)
        except PlmlabError:  # a 2-D GLM with a tokenizer that lacks GLM's specials fills no blanks
            return None

    def blank_ids(self, text: str) -> list[int]:
        """A fill-blanks text's ids (as families/glm.py prepare lays them out); a text without a blank is
        refused (/v1/completions continues a text)."""
        self.require("fill-blanks")
        masks = self.glm_tokens().masks
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if not any(t in masks for t in ids):
            raise ApiError(f"'input': the text {text[:60]!r} has no blank ([MASK], [sMASK] or [gMASK]); "
                           "/v1/completions continues a text", param="input", code="no_blank")
        return prepare(self.tokenizer, text)

    def continuation_ids(self, prompts: list) -> tuple[list[int], int]:
        """A 2-D GLM's completion: (Part A, its [gMASK]'s index) of `[CLS] text [gMASK] <eos>`, the
        blank after the text (families/glm.py continuation). One text per request: each is decoded alone."""
        if len(prompts) != 1 or not isinstance(prompts[0], str):
            raise ApiError("a 2-D-position GLM continues one text per request (the blank after it): send 'prompt' "
                           "as a single string", param="prompt", code="invalid_value")
        try:
            return continuation(self.tokenizer, prompts[0])
        except PlmlabError as e:
            raise ApiError(str(e), param="prompt") from None

    @property
    def blank_chat(self) -> bool:
        """Does chat answer as GLM's blank (a 2-D-position GLM: serve/blank_jobs.py)?"""
        return "chat" in self.tasks and self.glm_tokens() is not None

    def chat_ids(self, messages: list[dict]) -> list[int]:
        """The prompt of a chat request: the rendered conversation; for a 2-D GLM its Part A,
        ending in the blank's [gMASK] (families/glm.py glm_prompt, as SFT trains)."""
        self.require("chat")
        try:
            if self.blank_chat:
                return family_of(self.config).chat_prompt(self.tokenizer, messages)
            return encode_chat(self.tokenizer, messages, add_generation_prompt=True)
        except PlmlabError as e:
            raise ApiError(str(e), param="messages") from None

    def prompt_ids(self, prompt) -> list[int]:
        """A text's ids (or given ids, checked against the vocabulary)."""
        if isinstance(prompt, list):
            if max(prompt) >= self.config.vocab_size:
                raise ApiError(f"token id {max(prompt)} is past the model's vocabulary of {self.config.vocab_size}",
                               param="prompt", code="invalid_value")
            return prompt
        try:
            return encode_prompt(self.model, self.tokenizer, prompt)
        except PlmlabError as e:
            raise ApiError(str(e), param="prompt") from None

    def check_context(self, rows: list[list[int]], max_tokens: int, param: str = "prompt") -> None:
        longest = max(len(r) for r in rows)
        if not family_of(self.config).continues_prompt:  # the encoder takes the input, the decoder the answer
            if longest > self.context or max_tokens + 1 > self.context:
                raise ApiError(f"the input has {longest} tokens and max_tokens is {max_tokens}; the model's context "
                               f"is {self.context} positions for each", param=param, code="context_length_exceeded")
        elif longest + max_tokens > self.context:
            raise ApiError(f"the prompt has {longest} tokens and max_tokens is {max_tokens}: {longest + max_tokens} "
                           f"tokens, more than the model's context of {self.context}", param=param,
                           code="context_length_exceeded")

    def fits(self, rows: list[list[int]], max_tokens: int) -> bool:
        """Can these rows decode together (the longest prompt with the largest max_tokens)?"""
        try:
            self.check_context(rows, max_tokens)
        except ApiError:
            return False
        return True

    def card(self) -> dict:
        c = self.config
        return {"id": self.name, "object": "model", "created": 0, "owned_by": "plmlab",
                "arch": c.arch, "position": c.position, "params": count_parameters(c)["params"],
                "context_length": self.context, "vocab_size": c.vocab_size, "tasks": self.tasks,
                "tokenizer": {"style": self.tokenizer.style, "vocab_size": self.tokenizer.vocab_size},
                "chat_template": self.chat_template() is not None}
