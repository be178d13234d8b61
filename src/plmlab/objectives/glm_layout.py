"""GLM's input layout: Part A, Part B, the two position rows and the attention mask.

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

Everything here is a pure numpy function, shared by the pretraining objective, `fill-blanks`,
the GLM decoding runner and cloze fine-tuning: `glm_layout` is the one place the positions and
the mask are built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PlmlabError
from ..masks import IGNORE_INDEX
from ..tokenizers.chat import encode_chat

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


def glm_prompt(tokenizer, messages: list[dict]) -> tuple[list[int], int]:
    """(Part A, the index of its [gMASK]) for the assistant turn that follows ``messages``: the
    template's rendering with the generation prompt as `blank_prompt` lays it out. SFT trains this
    layout (finetune/sft_glm.py) and `plmlab chat` decodes it."""
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
