"""The family hooks and their defaults: what code outside the model core asks about a model.

`Config` says what a model *is* (norms, positions, attention sharing ...); a few things about how
a model is *fed* follow from its family and are asked for here, so that generation, scoring, SFT
encoding, chat and serving never compare `config.position` or `config.arch` with a family's
values themselves (tests/test_family_branches.py checks that):

    family_of(config).decode_inputs(config)       how `generate` feeds each step (positions, masks)
    family_of(config).answers_as_blank            a prompt is answered as a blank after it (GLM)
    family_of(config).chat_prompt(tok, messages)   the ids an answer follows
    ...

`Family` is what a model with 1-D positions that continues its prompt left to right needs (GPT,
LLaMA, Mistral, Qwen2, GLM-4, BERT, T5 ...): such a family needs no module here. A family that
lays its inputs out differently (GLM's 2-D blank infilling, families/glm.py) subclasses it and
overrides what differs.
"""

from __future__ import annotations

import torch

from ..masks import positions_from_padding
from ..tokenizers.chat import encode_chat


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
    """The defaults: 1-D positions, a prompt continued token after token."""

    name = "default"
    # A prompt is answered as the blank after it (GLM: ``Part A [gMASK] | <sop> answer <eop>``) rather
    # than continued: chat, completions, `evaluate --task generate` and serve decode that blank
    # (plmlab.infill), fill-blanks and cloze need it, and SFT / DPO examples are laid out so.
    answers_as_blank = False
    answer_overhead = 0  # positions an answer takes beyond its tokens (GLM: the blank's <sop>)
    static_decode = True  # compile=True's static step (1-D positions over one left-padded cache) fits
    scorer = "causal"  # how a decoder scores a continuation (evaluate/scoring.py picks the scorer by it)
    next_steps = "causal"  # which commands a finished pretraining run suggests (train/next_steps.py)

    def matches(self, config) -> bool:
        """Is `config` a model of this family? (The default family is what no other family claims.)"""
        return False

    def decode_inputs(self, config):
        """The object that gives `generate`'s decoder runner the positions and masks of a step."""
        return CausalInputs(config)

    def blank_tokens(self, tokenizer):
        """The special ids the family's blanks need (GLM: `GlmTokens`), or None: no blanks to fill."""
        return None

    def chat_prompt(self, tokenizer, messages: list[dict]) -> list[int]:
        """The ids the assistant's answer follows: the chat template's rendering with its generation prompt."""
        return encode_chat(tokenizer, messages, add_generation_prompt=True)
