"""SFT data: conversations read from JSONL, encoded through the chat template with a loss mask,
and packed into rows without cross-example attention.

Records: ``{"messages": [{"role", "content"}, ...]}`` (OpenAI's shape) or ``{"prompt", "response"}``
(a user turn and an assistant turn). A decoder learns the assistant tokens (content + end of
turn; every token with ``train_on_prompt``); an encoder-decoder (T5) learns each assistant turn
as a target, its history rendered by the template as the encoder's input.

Packing (decoders): a micro-batch's examples are laid into rows of at most ``seq_len`` tokens,
in order, a new row when the next example does not fit. Each example restarts its positions at
0 and sees only itself, causally -- a block-diagonal causal mask, so a packed example's loss is
the loss it has alone::

    row:  a a a b b c c c .        mask (1 = may attend)     positions
          a  1                                                0 1 2 0 1 0 1 2 0
          a  1 1
          a  1 1 1
          b        1
          b        1 1
          c            1
          c            1 1
          c            1 1 1
          .                  1  (padding sees only itself: no NaN, and no loss)

GLM's 2-D-position models pack the same way, each example its own Part A + Part B layout
(families/glm.py) as one block of the row's mask, its two position rows restarting at 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.records import read_records
from ..errors import PlmlabError
from ..families import family_of
from ..families.glm import glm_sft_view
from ..hf import load_config
from ..masks import IGNORE_INDEX
from ..objectives.base import pad_and_stack
from ..tokenizers.chat import check_messages, encode_chat_for_training, render_chat


def read_conversations(path: str) -> list[dict]:
    """[{"messages": [...], "_where": "path:line"}] of a JSONL file; each has an assistant turn."""
    out = []
    for line, record in read_records(path):
        out.append(conversation(record, f"{path}:{line}"))
    return out


def conversation(record: dict, where: str) -> dict:
    """One record as {"messages", "_where"}, checked (one line naming ``where`` for a bad one)."""
    if isinstance(record.get("messages"), list):
        messages = record["messages"]
    elif isinstance(record.get("prompt"), str) and isinstance(record.get("response"), str):
        messages = [{"role": "user", "content": record["prompt"]},
                    {"role": "assistant", "content": record["response"]}]
    else:
        raise PlmlabError(f'{where}: expected {{"messages": [...]}} or {{"prompt": str, "response": str}}')
    try:
        messages = check_messages(messages)
    except PlmlabError as e:
        raise PlmlabError(f"{where}: {e}") from None
    if not any(m["role"] == "assistant" for m in messages):
        raise PlmlabError(f"{where}: the conversation has no assistant turn: nothing to learn from")
    return {"messages": messages, "_where": where}


def encode_causal(tokenizer, record: dict, seq_len: int, train_on_prompt: bool = False,
                  truncate: bool = False) -> dict[str, np.ndarray]:
    """{"input_ids", "labels"} of one conversation: labels are the next token where it carries
    loss (already shifted, as every plmlab objective's), -100 elsewhere."""
    try:
        ids, flags = encode_chat_for_training(tokenizer, record["messages"])
    except PlmlabError as e:
        raise PlmlabError(f"{record['_where']}: {e}") from None
    if train_on_prompt:
        flags = [True] * len(ids)
    if len(ids) > seq_len:
        if not truncate:
            raise PlmlabError(f"{record['_where']}: {len(ids)} tokens, more than --seq-len {seq_len} "
                              "(raise it, or --truncate)")
        ids, flags = ids[:seq_len], flags[:seq_len]
    ids_ = np.asarray(ids, dtype=np.int64)  # (T,)
    labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)  # (T,)
    labels[:-1] = np.where(np.asarray(flags[1:], dtype=bool), ids_[1:], IGNORE_INDEX)
    return {"input_ids": ids_, "labels": labels}


def sft_view(tokenizer, record: dict, seq_len: int = 512, train_on_prompt: bool = False,
             two_d: bool = False) -> dict:
    """What SFT makes of one conversation (`plmlab objective sft --messages FILE --json`), through
    the same encoding the training uses: the rendered text, ids, labels (-100 where no loss; the
    next token elsewhere), the 1-D mask and positions of the example alone, readable tokens.
    ``two_d`` (a 2-D-position GLM): GLM's Part A + Part B layout instead (families/glm.py glm_sft_view)."""
    if two_d:
        return glm_sft_view(tokenizer, record, seq_len)
    example = encode_causal(tokenizer, record, seq_len, train_on_prompt)
    ids = example["input_ids"].tolist()
    return {"objective": "sft", "text": render_chat(tokenizer, record["messages"], add_generation_prompt=False),
            "original_ids": ids, "input_ids": ids, "labels": example["labels"].tolist(),
            "attention_mask": [1] * len(ids), "position_ids": list(range(len(ids))),
            "tokens": tokenizer.convert_ids_to_tokens(ids), "special_ids": tokenizer.special_ids,
            "eos_token_id": tokenizer.eos_id, "n_targets": int((example["labels"] != IGNORE_INDEX).sum())}


def two_d_model(directory) -> bool:
    """Is ``directory`` a checkpoint of a 2-D-position GLM (its config.json says so)? A tokenizer
    directory without a model config is not: SFT's layout is the model's, not the tokenizer's."""

    if directory is None or not (Path(directory) / "config.json").is_file():
        return False
    return family_of(load_config(directory)).answers_as_blank


def encode_seq2seq(tokenizer, record: dict, seq_len: int, truncate: bool = False) -> list[dict[str, np.ndarray]]:
    """T5: one (input, target) example per assistant turn -- the history before it, rendered with
    the generation prompt, then </s>; the turn's content, then </s>."""
    messages, out = record["messages"], []
    eos = tokenizer.eos_id
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        source = tokenizer.encode(render_chat(tokenizer, messages[:i], True), add_special_tokens=False) if i else []
        target = tokenizer.encode(m["content"], add_special_tokens=False)
        source, target = _fit(source, seq_len - 1, truncate, record), _fit(target, seq_len - 1, truncate, record)
        out.append({"input_ids": np.asarray(source + [eos], dtype=np.int64),
                    "attention_mask": np.ones(len(source) + 1, dtype=np.int64),
                    "labels": np.asarray(target + [eos], dtype=np.int64)})
    return out


def _fit(ids: list[int], limit: int, truncate: bool, record: dict) -> list[int]:
    if len(ids) <= limit:
        return ids
    if not truncate:
        raise PlmlabError(f"{record['_where']}: {len(ids) + 1} tokens, more than --seq-len {limit + 1} "
                          "(raise it, or --truncate)")
    return ids[:limit]


def pack(examples: list[dict[str, np.ndarray]], seq_len: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Rows of at most ``seq_len`` tokens, examples in order, with block-diagonal masks and
    per-example positions: causal and 0..n-1, or the example's own layout where it carries one
    (GLM's 2-D models: ``position_ids`` (2, n) and ``attention_mask`` (n, n), families/glm.py)."""
    rows: list[list[dict]] = [[]]
    for e in examples:
        if rows[-1] and _row_len(rows[-1]) + len(e["input_ids"]) > seq_len:
            rows.append([])
        rows[-1].append(e)
    T = max(_row_len(row) for row in rows)
    B = len(rows)
    two_d = "position_ids" in examples[0]
    ids = np.full((B, T), pad_id, dtype=np.int64)  # (B, T)
    labels = np.full((B, T), IGNORE_INDEX, dtype=np.int64)  # (B, T)
    positions = np.zeros((B, 2, T) if two_d else (B, T), dtype=np.int64)  # (B, [2,] T); padding at 0
    mask = np.zeros((B, T, T), dtype=bool)  # (B, Tq, Tk)
    causal = np.tril(np.ones((T, T), dtype=bool))  # (T, T)
    for b, row in enumerate(rows):
        start = 0
        for e in row:
            n = len(e["input_ids"])
            ids[b, start:start + n], labels[b, start:start + n] = e["input_ids"], e["labels"]
            positions[b, ..., start:start + n] = e["position_ids"] if two_d else np.arange(n)
            mask[b, start:start + n, start:start + n] = e["attention_mask"] if two_d else causal[:n, :n]
            start += n
        mask[b, np.arange(start, T), np.arange(start, T)] = True  # padding: itself only
    real = np.arange(T)[None] < np.asarray([_row_len(r) for r in rows])[:, None]  # (B, T)
    return {"input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(labels),
            "attention_mask": torch.from_numpy(mask).long(), "position_ids": torch.from_numpy(positions),
            "token_mask": torch.from_numpy(real).long()}  # (B, T) real tokens: counted, never fed to the model


def _row_len(row: list[dict]) -> int:
    return sum(len(x["input_ids"]) for x in row)


def pad_seq2seq(examples: list[dict[str, np.ndarray]], pad_id: int) -> dict[str, torch.Tensor]:
    return pad_and_stack(examples, {"input_ids": pad_id, "labels": IGNORE_INDEX})
