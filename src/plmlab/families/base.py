"""The family hooks and their defaults: what code outside the model core asks about a model.

`Config` says what a model *is* (norms, positions, attention sharing ...); a few things about how
a model is *fed* follow from its family and are asked for here, so that generation, scoring, SFT
encoding, chat and serving never compare `config.position` or `config.arch` with a family's
values themselves (tests/unit/test_family_branches.py checks that):

    family_of(config).decode_inputs(config)       how `generate` feeds each step (positions, masks)
    family_of(config).answers_as_blank            a prompt is answered as a blank after it (GLM)
    family_of(config).chat_prompt(tok, messages)   the ids an answer follows
    ...

The three skeletons' defaults are here: `Family` (decoder-only, 1-D positions, the prompt continued
left to right: GPT, LLaMA, Mistral, Qwen2, GLM-4 ...), `EncoderDecoder` (T5, BART) and `Encoder`
(BERT, RoBERTa, ALBERT ...). A model family that is one of these needs no module of its own; one
that lays its inputs out differently (GLM's 2-D blank infilling, families/glm.py) subclasses its
skeleton's class and overrides what differs.
"""

from __future__ import annotations

import torch

from ..masks import positions_from_padding
from ..tokenizers.chat import encode_chat

# Position kinds with a fixed number of positions: a longer sequence cannot be embedded at all
# (learned / sinusoidal tables) or leaves the trained range (rotary). T5's relative buckets
# clip distances, so its inputs have no hard limit.
LIMITED_POSITIONS = ("learned", "sinusoidal", "learned-2d", "rotary", "rotary-2d")


class CausalInputs:
    """How `generate` feeds a decoder with 1-D positions: positions counted over real tokens, and
    the (B, past + T) padding mask. With no padding both are left to the model's defaults (its
    fused causal path)."""

    def __init__(self, config) -> None:
        self.config = config

    def prefill(self, input_ids: torch.Tensor, mask: torch.Tensor, padded: bool) -> dict:
        if not padded:
            return {}
        return {"attention_mask": mask, "position_ids": positions_from_padding(mask)}

    def step(self, mask: torch.Tensor, padded: bool, n_new: int) -> dict:
        """Inputs for the last `n_new` tokens of a (B, past + n_new) mask."""
        if not padded:
            return {}
        return {"attention_mask": mask, "position_ids": positions_from_padding(mask)[:, -n_new:]}


class Family:
    """A decoder-only model with 1-D positions: the prompt continued token after token."""

    name = "decoder"
    generates = True  # it writes text token by token (generate, chat, completions)
    continues_prompt = True  # its answer continues the prompt (so prompts are left-padded, and echoed)
    # A prompt is answered as the blank after it (GLM: ``Part A [gMASK] | <sop> answer <eop>``) rather
    # than continued: chat, completions, `evaluate --task generate` and serve decode that blank
    # (plmlab.infill), fill-blanks and cloze need it, and SFT / DPO examples are laid out so.
    answers_as_blank = False
    answer_overhead = 0  # positions an answer takes beyond its tokens (GLM: the blank's <sop>)
    static_decode = True  # compile=True's static step (a decoder, 1-D positions over one left-padded cache) fits
    scorer = "causal"  # how a continuation is scored (evaluate/scoring.py: causal, seq2seq, pll, glm)
    next_steps = "causal"  # which commands a finished pretraining run suggests (train/next_steps.py)

    def matches(self, config) -> bool:
        """Is `config` a model of this family?"""
        return config.arch == "decoder"

    def decode_inputs(self, config):
        """The object that gives `generate`'s decoder runner the positions and masks of a step."""
        return CausalInputs(config)

    def blank_tokens(self, tokenizer):
        """The special ids the family's blanks need (GLM: `GlmTokens`), or None: no blanks to fill."""
        return None

    def chat_prompt(self, tokenizer, messages: list[dict]) -> list[int]:
        """The ids the assistant's answer follows: the chat template's rendering with its generation prompt."""
        return encode_chat(tokenizer, messages, add_generation_prompt=True)

    def answer_room(self, prompt_len: int, limit: int) -> int:
        """Positions an answer may take after a prompt of `prompt_len` ids in a context of `limit`."""
        return limit - prompt_len - self.answer_overhead

    def layers(self, config) -> str:
        """The depth in words (`plmlab info`, model cards)."""
        return f"{config.n_layers} layers"

    def depth(self, config) -> int:
        """Blocks a token passes through, every stack counted (the FLOP estimate's layer count)."""
        return config.n_layers

    def context_limit(self, config) -> int | None:
        """The most positions a sequence may take (`max_positions`), or None where its positions have no
        hard limit (T5's relative buckets)."""
        return config.max_positions if config.position in LIMITED_POSITIONS else None


class EncoderDecoder(Family):
    """T5, BART: the encoder reads the prompt, the decoder writes the answer from its start token."""

    name = "encoder-decoder"
    continues_prompt = False  # the decoder answers the encoder's input from its start token
    static_decode = False
    scorer = "seq2seq"  # the continuation as the decoder's target
    next_steps = "seq2seq"

    def matches(self, config) -> bool:
        return config.arch == "encoder-decoder"

    def chat_prompt(self, tokenizer, messages: list[dict]) -> list[int]:
        """The rendering, closed with </s> as SFT encodes a T5 input."""
        return super().chat_prompt(tokenizer, messages) + [tokenizer.eos_id]

    def layers(self, config) -> str:
        return f"{config.n_layers} encoder + {config.decoder_layers} decoder layers"

    def depth(self, config) -> int:
        return config.n_layers + config.decoder_layers

    def answer_room(self, prompt_len: int, limit: int) -> int:
        """The decoder has its own positions (less its start token), once the prompt fits the encoder."""
        return limit - 1 if prompt_len <= limit else 0


class Encoder(Family):
    """BERT, RoBERTa, ALBERT ...: no left-to-right answer; a continuation is scored by pseudo-log-likelihood."""

    name = "encoder"
    generates = continues_prompt = static_decode = False
    scorer = "pll"
    next_steps = "masked"

    def matches(self, config) -> bool:
        return config.arch == "encoder"
