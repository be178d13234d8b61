"""T5 span filling as text: which sentinel each generated fill belongs to, and the input rebuilt.

A span-corruption model (Raffel et al. 2020, section 3.1.4) answers `the parser <extra_id_0> a
file.` with `<extra_id_0> reads <extra_id_1> ...`: the sentinels are special tokens, so a plain
decode drops them and the fills run together. Here the output is cut at its sentinels instead.
"""

from __future__ import annotations


def sentinels_in(ids: list[int], tokenizer) -> list[int]:
    """The sentinel ids of an input, in order of appearance."""
    sentinels = set(tokenizer.sentinel_ids or ())
    return [t for t in ids if t in sentinels]


def split_fills(out_ids: list[int], tokenizer) -> dict[int, list[int]]:
    """sentinel id -> the ids generated after it (up to the next sentinel); EOS and padding cut."""
    sentinels = set(tokenizer.sentinel_ids or ())
    fills: dict[int, list[int]] = {}
    current = None
    for t in out_ids:
        if t in sentinels:
            current = t
            fills.setdefault(t, [])
        elif current is not None:
            fills[current].append(t)
    return fills


def span_result(input_ids: list[int], out_ids: list[int], tokenizer) -> dict:
    """{"text": the output with its sentinels, "fills": [{sentinel, text}], "filled": the input with
    each sentinel replaced by its fill}; a sentinel the model left unfilled stays in `filled`."""
    drop = {tokenizer.eos_id, tokenizer.pad_id} - {None}
    out_ids = [t for t in out_ids if t not in drop]
    fills = split_fills(out_ids, tokenizer)
    rebuilt: list[int] = []
    for t in input_ids:
        if t in drop:
            continue
        rebuilt.extend(fills.get(t, [t]))
    return {
        "text": tokenizer.decode(out_ids, skip_special_tokens=False).strip(),
        "fills": [{"sentinel": tokenizer.id_to_token(s), "text": tokenizer.decode(fills.get(s, []))}
                  for s in sentinels_in(input_ids, tokenizer)],
        "filled": tokenizer.decode(rebuilt, skip_special_tokens=False),
    }
