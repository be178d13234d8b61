"""Text out of token ids as they are produced: streaming with partial UTF-8, and stop strings.

A byte-level BPE token may hold only part of a character's UTF-8 bytes, so decoding a prefix of
the ids can end in U+FFFD. The streamer decodes the whole continuation each step and writes only
the new suffix once it no longer ends in an incomplete character; it also holds back a tail
that could still grow into a stop string, so a stop string never reaches the output.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

REPLACEMENT = "\ufffd"


def find_stop(text: str, stops: Iterable[str]) -> int:
    """Index of the earliest stop string in text, or -1."""
    hits = [i for s in stops if s and (i := text.find(s)) >= 0]
    return min(hits) if hits else -1


def held_back(text: str, stops: Iterable[str]) -> int:
    """Length of the longest tail of text that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


class StopStrings:
    """Stop criterion: a row ends once its decoded continuation contains a stop string.

    Called with the generated ids (N, n) and which rows to check (N,); returns (N,) bool.
    `skip` ids (EOS, padding) are cut before decoding.
    """

    def __init__(self, tokenizer, stops: Iterable[str], skip: Iterable[int] = ()) -> None:
        self.tokenizer, self.stops = tokenizer, [s for s in stops if s]
        self.skip = set(int(i) for i in skip)

    def text(self, ids: list[int]) -> str:
        for i, t in enumerate(ids):
            if t in self.skip:
                ids = ids[:i]
                break
        return self.tokenizer.decode(ids)

    def __call__(self, generated: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        hit = torch.zeros(generated.shape[0], dtype=torch.bool, device=generated.device)
        for row in active.nonzero().flatten().tolist():
            hit[row] = find_stop(self.text(generated[row].tolist()), self.stops) >= 0
        return hit


class CallbackStreamer:
    """Adapts a plain function `fn(tokens (B,))` to the streamer protocol (put / end)."""

    def __init__(self, fn: Callable[[torch.Tensor], object]) -> None:
        self.fn = fn

    def put(self, tokens: torch.Tensor) -> None:
        self.fn(tokens)

    def end(self) -> None:
        pass


class TextStreamer:
    """Writes the text of one row (`row`) as its tokens arrive.

    `write` receives only new text. Tokens in `end_ids` (EOS) end the row; text from the first
    stop string on is never written. `text` is everything written so far.
    """

    def __init__(self, tokenizer, write: Callable[[str], object], stop: Iterable[str] = (),
                 end_ids: Iterable[int] = (), row: int = 0) -> None:
        self.tokenizer, self.write, self.row = tokenizer, write, row
        self.stops = [s for s in stop if s]
        self.end_ids = set(int(i) for i in end_ids)
        self.ids: list[int] = []
        self.text = ""
        self.done = False

    def put(self, tokens: torch.Tensor) -> None:
        if self.done:
            return
        token = int(tokens.reshape(-1)[self.row])
        if token in self.end_ids:
            self.end()
            return
        self.ids.append(token)
        self._flush(final=False)

    def end(self) -> None:
        if not self.done:
            self._flush(final=True)
            self.done = True

    def _flush(self, final: bool) -> None:
        text = self.tokenizer.decode(self.ids)
        stop_at = find_stop(text, self.stops)
        if stop_at >= 0:
            text, final, self.done = text[:stop_at], True, True
        if not final:
            if text.endswith(REPLACEMENT):  # an incomplete UTF-8 character: wait for its bytes
                return
            text = text[:len(text) - held_back(text, self.stops)]
        # Decoding a longer id list extends the text for the tokenizers plmlab builds; should it
        # ever rewrite a written part, only what goes past the written length is added.
        if len(text) > len(self.text):
            new = text[len(self.text):]
            self.write(new)
            self.text += new
