"""GLM's 2-D family (the original GLM, ChatGLM-6B): its input layout and the hooks that feed it.

Du et al. 2022 (GLM, section 2.1-2.2). Given a text x1..x6 whose spans [x3] and [x5 x6] are
blanked, with Part B in the order (span 2, span 1):

    input    [CLS] x1 x2 [M] x4 [M] <eos> | [sop] x5 x6 | [sop] x3
    target    -    -  -   -  -   -   -    |  x5   x6 [eop] | x3  [eop]
    pos 1     0    1  2   3  4   5   6    |  5    5  5  |  3    3
    pos 2     0    0  0   0  0   0   0    |  1    2  3  |  1    2
              `------- Part A -------'      `------ Part B ------'

Attention (row = query, # = may attend): Part A sees all of Part A (bidirectional) and never
Part B; each Part B token sees all of Part A and Part B up to itself (causal):

              A A A A A A A B B B B B
    Part A    # # # # # # # . . . . .
    Part B    # # # # # # # # . . . .   (first [sop])
              # # # # # # # # # # # #   (last token)

`glm_layout` is the one place these positions and masks are built: the pretraining objective
(objectives/glm.py), `fill-blanks` and GLM's blank decoding (infill.py), `plmlab.generate`'s GLM
inputs (`GlmPrefixInputs`), scoring (evaluate/scoring_glm.py), perplexity, cloze fine-tuning,
and SFT / DPO examples (below: ChatGLM-6B's ``prompt [gMASK] | <sop> answer <eop>``) all lay
their inputs out with it, so a training example is exactly what decoding builds.

`GLM` (a `Family`) is what the rest of plmlab asks: a 2-D GLM answers a prompt as the blank after
it. GLM-4 and ChatGLM2/3 have 1-D rotary positions and continue their prompt as LLaMA does: they
take the decoder defaults (their presets are in presets/glm.py, their HF layouts in hf/glm.py and
hf/glm4.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import PlmlabError
from ..masks import IGNORE_INDEX
from ..tokenizers.chat import chat_usable, encode_chat, render_chat
from .base import Family

GLM_ROLES = ("mask", "smask", "gmask", "sop", "eop", "cls", "eos")
TWO_D_POSITIONS = ("learned-2d", "rotary-2d")  # the Config.position values that read GLM's two rows


@dataclass(frozen=True)
class GlmTokens:
    """The special ids GLM's layout needs (the `glm` tokenizer style provides them all)."""

    mask: int
    smask: int
    gmask: int
    sop: int
    eop: int
    cls: int
    eos: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "GlmTokens":
        ids = getattr(tokenizer, "special_ids", {}) or {}
        missing = [r for r in GLM_ROLES if r not in ids]
        if missing:
            raise PlmlabError(
                f"GLM blank infilling needs a GLM-style tokenizer; this one lacks {', '.join(missing)} "
                "(use a tokenizer of style 'glm')"
            )
        return cls(**{r: int(ids[r]) for r in GLM_ROLES})

    @property
    def masks(self) -> tuple[int, int, int]:
        return (self.mask, self.smask, self.gmask)


def build_blank_infilling(
    content: np.ndarray,  # (n,) token ids of the text, no specials
    spans: list[tuple[int, int]],  # non-overlapping [start, end) in content, sorted by start
    mask_ids: list[int],  # the mask token replacing each span ([MASK], [sMASK] or [gMASK])
    order: list[int],  # Part B order: a permutation of range(len(spans))
    tok: GlmTokens,
) -> dict[str, np.ndarray]:
    """One training example: input_ids (T,), labels (T,), position_ids (2, T), attention_mask (T, T)."""
    content = np.asarray(content, dtype=np.int64)
    pieces, mask_pos = [np.array([tok.cls])], []
    last, length = 0, 1
    for (start, end), mask_id in zip(spans, mask_ids):
        pieces += [content[last:start], np.array([mask_id])]
        length += start - last
        mask_pos.append(length)  # the [MASK]'s index in Part A = its first position id
        length += 1
        last = end
    pieces += [content[last:], np.array([tok.eos])]
    part_a = np.concatenate(pieces)  # (A,)
    n_a = len(part_a)

    ids, labels, blocks = [part_a], [np.full(n_a, IGNORE_INDEX)], []
    for s in order:
        start, end = spans[s]
        span = content[start:end]
        ids.append(np.concatenate(([tok.sop], span)))  # [sop] + span as input
        labels.append(np.concatenate((span, [tok.eop])))  # span + [eop] as target
        blocks.append((mask_pos[s], len(span) + 1))  # at its [MASK]'s position
    position_ids, attention_mask = glm_layout(n_a, blocks)
    return {"input_ids": np.concatenate(ids).astype(np.int64), "labels": np.concatenate(labels).astype(np.int64),
            "position_ids": position_ids, "attention_mask": attention_mask}


# --- the layout: the one place GLM's positions and mask are built -------------------------------------
def glm_layout(n_a: int, blocks: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Position ids (2, T) and attention mask (T, T) of Part A (n_a tokens) followed by Part B
    `blocks`: (position, length) each, in Part B order (see the module docstring's picture).

    The pretraining objective, `fill-blanks` and the GLM decoding runner all lay their inputs
    out with this function (or its two halves below)."""
    positions = glm_positions(n_a, blocks)
    return positions, glm_attention_mask(n_a, positions.shape[1])


def glm_positions(n_a: int, blocks: list[tuple[int, int]]) -> np.ndarray:
    """(2, T) int64: row 1 = 0..n_a-1 over Part A, then each block's `position` repeated; row 2 =
    0 over Part A, then 1, 2, ..., length inside each block."""
    pos, block = [np.arange(n_a)], [np.zeros(n_a, np.int64)]
    for position, length in blocks:
        pos.append(np.full(length, position))  # every token of the block at its mask's position
        block.append(np.arange(1, length + 1))  # 1, 2, ... inside the block
    return np.stack([np.concatenate(pos), np.concatenate(block)]).astype(np.int64)  # (2, T)


def glm_attention_mask(n_a: int, total: int, first_query: int = 0) -> np.ndarray:
    """(total - first_query, total) int8, 1 = may attend: the rows of queries first_query..total-1.
    Part A is bidirectional over Part A and never sees Part B; Part B is causal over A + B."""
    query = np.arange(first_query, total)[:, None]  # (Q, 1)
    key = np.arange(total)[None]  # (1, total)
    return ((key < n_a) & (query < n_a) | (query >= n_a) & (key <= query)).astype(np.int8)  # (Q, total)


def part_a_length(position_ids: np.ndarray) -> int:
    """Part A is where the block position (row 2) is 0."""
    return int((np.asarray(position_ids)[1] == 0).sum())


def rebuild_text(example: dict[str, np.ndarray], tok: GlmTokens) -> list[int]:
    """Put each Part B span back in place of its mask token: the original text's ids.

    A span is matched to its mask by the first position id (the mask's index in Part A).
    """
    ids = np.asarray(example["input_ids"])
    labels = np.asarray(example["labels"])
    pos = np.asarray(example["position_ids"])
    n_a = part_a_length(pos)
    fill: dict[int, list[int]] = {}
    i = n_a
    while i < len(ids):  # each span: [sop] at i, then its tokens until the label is [eop]
        j = i
        while labels[j] != tok.eop:
            j += 1
        fill[int(pos[0, i])] = [int(t) for t in labels[i:j]]
        i = j + 1
    out: list[int] = []
    for p in range(1, n_a - 1):  # Part A without its [CLS] and <eos>
        out += fill[p] if p in fill else [int(ids[p])]
    return out


# --- prompts: Part A of a conversation, of a text, of a text with blanks ---------------------------
def glm_prompt(tokenizer, messages: list[dict]) -> tuple[list[int], int]:
    """(Part A, the index of its [gMASK]) for the assistant turn that follows ``messages``: the
    template's rendering with the generation prompt as `blank_prompt` lays it out. SFT trains this
    layout (`glm_sft_examples` below) and `plmlab chat` decodes it."""
    return blank_prompt(tokenizer, encode_chat(tokenizer, messages, add_generation_prompt=True) if messages else [])


def blank_prompt(tokenizer, ids: list[int]) -> tuple[list[int], int]:
    """(Part A, the index of its [gMASK]) for the answer after ``ids``: the leading layout tokens
    (a template's ``[gMASK]<sop>`` prefix, GLM-4's 1-D convention) left out, then [gMASK]."""
    tok = GlmTokens.from_tokenizer(tokenizer)
    start = 0
    while start < len(ids) and ids[start] in (tok.gmask, tok.sop):
        start += 1
    part_a = list(ids[start:]) + [tok.gmask]
    return part_a, len(part_a) - 1


def text_prompt(tokenizer, text: str) -> tuple[list[int], int]:
    """Part A of a text (a chat rendering or a plain context): its ids, then the blank."""
    return blank_prompt(tokenizer, tokenizer.encode(text, add_special_tokens=False))


def prepare(tokenizer, text: str) -> list[int]:
    """The text's ids with its mask tokens; [gMASK] appended when there is none (continue the text).

    A space before a mask becomes its own byte-level token ("Ġ") that pretraining never shows
    before a mask (a blanked span takes its leading space with it): it is dropped, and the
    generated span brings the space back.
    """
    tok = GlmTokens.from_tokenizer(tokenizer)
    ids = tokenizer.encode(text, add_special_tokens=False)
    if not any(t in tok.masks for t in ids):
        ids.append(tok.gmask)
    out: list[int] = []
    for t in ids:
        if t in tok.masks and out and tokenizer.decode([out[-1]], skip_special_tokens=False) == " ":
            out.pop()
        out.append(t)
    return out


def continuation(tokenizer, text: str) -> tuple[list[int], int]:
    """(Part A, the index of its [gMASK]) that continues `text`: fill-blanks' layout of `text [gMASK]`,
    `[CLS] text [gMASK] <eos>`, the blank at a text's end that GLM pretraining fills. A text with a
    blank of its own is fill-blanks' to fill."""
    tok = GlmTokens.from_tokenizer(tokenizer)
    ids = prepare(tokenizer, text)
    if [t for t in ids if t in tok.masks] != [tok.gmask] or ids[-1] != tok.gmask:
        raise PlmlabError("the prompt has a blank ([MASK], [sMASK] or [gMASK]) of its own: fill it with "
                          "`plmlab fill-blanks` (a prompt is continued as the blank after it)")
    part_a = [tok.cls] + ids + [tok.eos]
    return part_a, len(part_a) - 2


# --- model inputs ---------------------------------------------------------------------------------
def blank_inputs(part_a: list[int], m: int, part_b: list[int]) -> dict[str, np.ndarray]:
    """The model inputs of Part A plus the blank at Part A index m decoded so far (`part_b`:
    [sop] and the span's tokens), laid out by `glm_layout` exactly as the objective lays out a
    training example: input_ids (T,), position_ids (2, T), attention_mask (T, T)."""
    position_ids, mask = glm_layout(len(part_a), [(m, len(part_b))] if part_b else [])
    return {"input_ids": np.asarray(part_a + part_b, dtype=np.int64), "position_ids": position_ids,
            "attention_mask": mask.astype(np.int64)}


def batch_of_one(inputs: dict[str, np.ndarray], device) -> dict[str, torch.Tensor]:
    """A batch of one on `device`."""
    return {k: torch.from_numpy(v)[None].to(device) for k, v in inputs.items()}


class GlmPrefixInputs:
    """How `plmlab.generate` feeds a GLM model (Du et al. 2022): the prompt is Part A
    (bidirectional) and the continuation one blank at its end, each new token at position
    (prompt length, k) with block positions k = 1, 2, ... as if a [gMASK] followed the prompt.
    `generate` has no tokenizer, so it cannot add GLM's [gMASK] / [sop] tokens itself:
    `plmlab.infill.fill_blanks` does, and is the better way to continue a text with a GLM model.

    Positions and masks come from `glm_layout` (the objective's own layout), per row:
    a left-padded row lays out its real tokens only, its padding at position 0, never attended.
    The first `prefill` fixes the prompt length; the uncached path calls `prefill` again on the
    grown sequence, which lays out Part A + Part B the same way.
    """

    def __init__(self, config) -> None:
        self.prompt_len: int | None = None

    def prefill(self, input_ids: torch.Tensor, mask: torch.Tensor, padded: bool) -> dict:
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
        return self._inputs(mask, input_ids.shape[1])

    def step(self, mask: torch.Tensor, padded: bool, n_new: int) -> dict:
        """The last `n_new` tokens of a (B, past + n_new) mask: they see every real key."""
        return self._inputs(mask, n_new)

    def _inputs(self, mask: torch.Tensor, n_query: int) -> dict:
        """Position ids (B, 2, n_query) and attention mask (B, n_query, T) of the last n_query
        tokens of a (B, T) padding mask (1 = a token, 0 = left padding)."""
        B, T = mask.shape
        n_a = self.prompt_len
        real = mask.bool()
        pos = torch.zeros(B, 2, T, dtype=torch.long)  # (B, 2, T) padding stays at (0, 0)
        for b, n_real in enumerate(real[:, :n_a].sum(-1).tolist()):  # the blank sits right after the prompt
            row = glm_positions(n_real, [(n_real, T - n_a)] if T > n_a else [])  # (2, n_real + T - A)
            pos[b, :, T - row.shape[1]:] = torch.from_numpy(row)
        allowed = torch.from_numpy(glm_attention_mask(n_a, T, first_query=T - n_query)).to(mask.device).bool()
        return {"position_ids": pos[:, :, T - n_query:].to(mask.device),
                "attention_mask": (allowed[None] & real[:, None, :]).long()}  # (B, n_query, T)


# --- SFT and DPO examples --------------------------------------------------------------------------
# The prompt is Part A, the answer one blank of Part B: the layout ChatGLM-6B fine-tunes with (THUDM
# ChatGLM-6B ptuning/main.py: ``prompt [gMASK] <sop> answer <eop>``; modeling_chatglm.py get_position_ids /
# get_masks) and the one GLM's blank decoding reads (infill.decode_span):
#
#     input     p1 p2 ... pk [gMASK] | <sop> a1  a2  ... an
#     target     -  -      -    -    |  a1   a2  a3  ... <eop>
#     pos 1      0  1     k-1   k    |  k    k   k   ...  k      (every block token at the mask)
#     pos 2      0  0      0    0    |  1    2   3   ... n+1
#                `--- Part A: bidirectional --'  `-- Part B: causal, sees all of Part A --'
#
# Part A is the conversation so far as the chat template renders it with the generation prompt, less
# the template's own leading [gMASK]<sop> (GLM-4's 1-D convention, the GLM tokenizer style's default):
# the blank's [gMASK] ends Part A, its <sop> starts Part B. The loss is on the answer and its closing
# <eop> only (ChatGLM-6B's eos token is <eop>, and GLM's blanks end with it).
def glm_sft_examples(tokenizer, record: dict, seq_len: int, truncate: bool = False) -> list[dict[str, np.ndarray]]:
    """One example per assistant turn: {"input_ids", "labels" (the next token, -100 on Part A),
    "position_ids" (2, T), "attention_mask" (T, T)}."""
    tok = GlmTokens.from_tokenizer(tokenizer)
    messages, out = record["messages"], []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        part_a, mask_at = glm_prompt(tokenizer, messages[:i])
        answer = tokenizer.encode(m["content"], add_special_tokens=False)
        answer = _fit(len(part_a), answer, seq_len, truncate, record["_where"])
        example = blank_inputs(part_a, mask_at, [tok.sop] + answer)
        example["labels"] = np.asarray([IGNORE_INDEX] * len(part_a) + answer + [tok.eop], dtype=np.int64)
        out.append(example)
    return out


def glm_sft_view(tokenizer, record: dict, seq_len: int) -> dict:
    """`plmlab objective sft` on a 2-D model: the example of the conversation's last assistant turn
    (its Part A is the whole history before it) exactly as `glm_sft_examples` makes it -- both
    position rows, the (T, T) mask, Part A and Part B -- and how many examples the record gives."""
    tok = GlmTokens.from_tokenizer(tokenizer)
    examples = glm_sft_examples(tokenizer, record, seq_len)
    example = examples[-1]
    ids, labels = example["input_ids"].tolist(), example["labels"]
    n_a = part_a_length(example["position_ids"])
    return {"objective": "sft", "layout": "glm-2d",
            "text": render_chat(tokenizer, record["messages"], add_generation_prompt=False),
            "original_ids": ids, "input_ids": ids, "labels": labels.tolist(),
            "attention_mask": example["attention_mask"].tolist(), "position_ids": example["position_ids"].tolist(),
            "tokens": tokenizer.convert_ids_to_tokens(ids), "special_ids": tokenizer.special_ids,
            "mask_token_id": tok.gmask, "sop_token_id": tok.sop, "eop_token_id": tok.eop, "eos_token_id": tok.eop,
            "part_a": ids[:n_a], "part_b": ids[n_a:], "part_a_length": n_a,
            "n_targets": int((labels != IGNORE_INDEX).sum()), "examples": len(examples)}


def glm_response_row(part_a: list[int], mask_at: int, response: list[int], tok: GlmTokens) -> dict[str, np.ndarray]:
    """DPO's row of one response: Part A + ``<sop> response <eop>``, labels the input ids of the
    response and its <eop> (DPO's convention: label t is predicted by the logits at t - 1)."""
    row = blank_inputs(part_a, mask_at, [tok.sop] + response + [tok.eop])
    row["labels"] = np.asarray([IGNORE_INDEX] * (len(part_a) + 1) + response + [tok.eop], dtype=np.int64)
    return row


def glm_preference(record: dict, tokenizer, limit: int, truncate: bool) -> dict[str, np.ndarray]:
    """DPO's example of a 2-D model: each response as `glm_response_row` of the prompt's Part A --
    the prompt's messages rendered by the chat template where the tokenizer has one (`glm_prompt`,
    as SFT trains and chat decodes), else the prompt's text as it is; then [gMASK]."""
    tok = GlmTokens.from_tokenizer(tokenizer)
    where = record["_where"]
    if chat_usable(tokenizer):
        part_a, _ = glm_prompt(tokenizer, record["messages"])
    elif record["prompt"] is None:
        raise PlmlabError(f"{where}: a conversational record needs a chat template, and this tokenizer has none")
    else:
        prompt = tokenizer.encode(record["prompt"], add_special_tokens=False)
        if not prompt:
            raise PlmlabError(f"{where}: the prompt encodes to no tokens")
        part_a = prompt + [tok.gmask]
    example = {}
    for key in ("chosen", "rejected"):
        response = tokenizer.encode(record[key], add_special_tokens=False)
        response = _fit(len(part_a) + 1, response, limit, truncate, where)
        for name, value in glm_response_row(part_a, len(part_a) - 1, response, tok).items():
            example[f"{key}_{name}"] = value
    return example


def _fit(n_a: int, answer: list[int], limit: int, truncate: bool, where: str) -> list[int]:
    """The answer, cut (with ``truncate``) so that Part A + <sop> + answer fit in ``limit`` tokens."""
    room = limit - n_a - 1
    if room < 1:
        raise PlmlabError(f"{where}: the prompt has {n_a} tokens with GLM's [gMASK] and leaves no room for an "
                          f"answer in {limit} tokens")
    if len(answer) > room and not truncate:
        raise PlmlabError(f"{where}: {n_a + 1 + len(answer)} tokens, more than the limit of {limit} "
                          "(raise it, or --truncate)")
    return answer[:room]


# --- the hooks the rest of plmlab asks (families/base.py) ---------------------------------------------
class Glm(Family):
    name = "glm"
    answers_as_blank = True  # SFT trains `prompt [gMASK] | <sop> answer <eop>`; decoding asks for that blank
    answer_overhead = 1  # the blank's <sop>
    static_decode = False  # two position rows and a prefix mask per step
    scorer = "glm"  # the continuation as the blank after the context (evaluate/scoring_glm.py)
    next_steps = "blanks"

    def matches(self, config) -> bool:
        return config.arch == "decoder" and config.position in TWO_D_POSITIONS

    def decode_inputs(self, config):
        return GlmPrefixInputs(config)

    def blank_tokens(self, tokenizer) -> GlmTokens:
        return GlmTokens.from_tokenizer(tokenizer)

    def chat_prompt(self, tokenizer, messages: list[dict]) -> list[int]:
        return glm_prompt(tokenizer, messages)[0]


GLM = Glm()
