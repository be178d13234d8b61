"""SFT and DPO examples for GLM's 2-D-position models (the original GLM, ChatGLM-6B): the prompt
is Part A, the answer one blank of Part B -- the layout ChatGLM-6B fine-tunes with (THUDM
ChatGLM-6B ptuning/main.py: ``prompt [gMASK] <sop> answer <eop>``; modeling_chatglm.py
get_position_ids / get_masks) and the one plmlab's GLM decoding reads (infill.decode_span):

    input     p1 p2 ... pk [gMASK] | <sop> a1  a2  ... an
    target     -  -      -    -    |  a1   a2  a3  ... <eop>
    pos 1      0  1     k-1   k    |  k    k   k   ...  k      (every block token at the mask)
    pos 2      0  0      0    0    |  1    2   3   ... n+1
               `--- Part A: bidirectional --'  `-- Part B: causal, sees all of Part A --'

Part A is the conversation so far as the chat template renders it with the generation prompt.
GLM's layout tokens are the layout's own: where the template writes them at its start (the GLM
family default is GLM-4's ``[gMASK]<sop>`` prefix, a 1-D model's convention), they are left
out of Part A, and the blank's [gMASK] ends Part A, its <sop> starts Part B. The loss is on the
answer and its closing <eop> only (ChatGLM-6B's eos token is <eop>, and GLM's blanks end with it).
Positions and masks come from `infill.blank_inputs` (objectives/glm_layout.py), so a training
example is exactly what generation builds for the prompt and the answer so far.
"""

from __future__ import annotations

import numpy as np

from ..errors import PlmlabError
from ..infill import blank_inputs
from ..masks import IGNORE_INDEX
from ..objectives.glm_layout import GlmTokens, glm_prompt, part_a_length
from ..tokenizers.chat import chat_usable


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
    from ..tokenizers.chat import render_chat

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
        response = _fit(len(part_a) + 1, tokenizer.encode(record[key], add_special_tokens=False), limit, truncate, where)
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
