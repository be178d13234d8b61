"""Input formats of the encoder family: RoBERTa's four (Liu et al. 2019, section 4.2), and the
NSP (BERT) / SOP (ALBERT) pairs they contain.

  full-sentences  whole sentences packed up to seq_len, crossing documents; an extra separator
                  marks each document boundary: [CLS] s1 s2 [SEP] t1 t2 [SEP]
  doc-sentences   the same, never crossing a document: short examples near document ends, so
                  batches should hold a constant number of tokens (`batches_by_tokens`)
  segment-pair    BERT's pairs of multi-sentence segments ([CLS] A [SEP] B [SEP]) with NSP:
                  B is the real continuation (label 0) or text from another document (label 1)
  sentence-pair   pairs of single sentences with NSP; short, so batched by tokens as well

For SOP (Lan et al. 2020, section 4.1) the pair formats always take A and B as consecutive
text of one document and swap them half of the time (label 1 = swapped).

Segment construction follows `create_pretraining_data.py`: a document's sentences are grouped
into chunks of up to max_tokens; each chunk is one example. With probability `short_seq_prob`
a shorter target length (uniform in [2, max_tokens]) keeps only the chunk's first sentences.
A is the first k >= 1 sentences (k uniform), B the rest; a random B takes whole sentences
from a random start in another document until the target length; an over-long pair loses
tokens from the longer side, from the front or the back at random (`truncate_pair`).

Deviations that make every example a pure function of (data, index, rng): the chunking of a
document is fixed (the original re-used the segments a random B left over, rng-dependently),
and a chunk of a single sentence is cut at a random token into A and B instead of forcing a
random B, so NSP labels are balanced and SOP never turns into NSP. Documents of fewer than two
tokens give no pair.

Special tokens and token types come from the tokenizer's own template (`Template`), so the
same code gives BERT's [CLS]/[SEP] with types 0/1 and RoBERTa's <s> A </s></s> B </s>.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PlmlabError

LABEL_KEYS = {"nsp": "next_sentence_label", "sop": "sentence_order_label"}


@dataclass
class Template:
    """The special tokens a tokenizer wraps around one text or a pair, and their token types."""

    prefix: list[int]  # before A
    suffix: list[int]  # after A alone
    pair_prefix: list[int]
    middle: list[int]  # between A and B
    pair_suffix: list[int]
    types: tuple[int, int]  # token type of A's region (and the specials before it), of B's region
    separator: int | None  # between documents inside one segment

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "Template":
        single = tokenizer.backend.encode("a")
        pair = tokenizer.backend.encode("a", "b")
        a = [i for i, s in enumerate(single.sequence_ids) if s == 0]
        seq = pair.sequence_ids
        pa = [i for i, s in enumerate(seq) if s == 0]
        pb = [i for i, s in enumerate(seq) if s == 1]
        ids = pair.ids
        return cls(
            prefix=single.ids[: a[0]], suffix=single.ids[a[-1] + 1:], pair_prefix=ids[: pa[0]],
            middle=ids[pa[-1] + 1: pb[0]], pair_suffix=ids[pb[-1] + 1:],
            types=(pair.type_ids[pa[0]], pair.type_ids[pb[0]]),
            separator=next((i for i in (tokenizer.sep_id, tokenizer.eos_id) if i is not None), None),
        )

    @property
    def single_overhead(self) -> int:
        return len(self.prefix) + len(self.suffix)

    @property
    def pair_overhead(self) -> int:
        return len(self.pair_prefix) + len(self.middle) + len(self.pair_suffix)

    def wrap(self, parts: list[np.ndarray]) -> dict[str, np.ndarray]:
        """One segment of one or more documents' text: prefix part1 [SEP] part2 ... suffix."""
        body: list[int] = []
        for k, part in enumerate(parts):
            if k and self.separator is not None:
                body.append(self.separator)
            body.extend(int(t) for t in part)
        ids = np.asarray(self.prefix + body + self.suffix, dtype=np.int64)
        return _arrays(ids, np.full(len(ids), self.types[0], dtype=np.int64))

    def wrap_pair(self, a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
        first = self.pair_prefix + [int(t) for t in a] + self.middle
        ids = np.asarray(first + [int(t) for t in b] + self.pair_suffix, dtype=np.int64)
        types = np.full(len(ids), self.types[1], dtype=np.int64)
        types[: len(first)] = self.types[0]
        return _arrays(ids, types)


def _arrays(ids: np.ndarray, types: np.ndarray) -> dict[str, np.ndarray]:
    return {"input_ids": ids, "attention_mask": np.ones(len(ids), dtype=np.int64), "token_type_ids": types}


def truncate_pair(a: np.ndarray, b: np.ndarray, max_tokens: int, rng: np.random.Generator):
    """BERT's `truncate_seq_pair`: drop one token at a time from the longer side (B on a tie),
    from its front or its back with probability 1/2, until the pair fits. The same result in
    closed form: the counts per side, then a binomial split between front and back."""
    excess = len(a) + len(b) - max_tokens
    if excess <= 0:
        return a, b
    cut = {"a": 0, "b": 0}
    gap = min(abs(len(a) - len(b)), excess)
    cut["a" if len(a) > len(b) else "b"] += gap
    rest = excess - gap
    cut["b"] += (rest + 1) // 2
    cut["a"] += rest // 2

    def trim(x: np.ndarray, n: int) -> np.ndarray:
        front = int(rng.binomial(n, 0.5)) if n else 0
        return x[front: len(x) - (n - front)]

    return trim(a, cut["a"]), trim(b, cut["b"])


# --- layouts: index -> wrapped example ------------------------------------------------------------
class Layout:
    """Turns a corpus into indexed examples (before masking); plans are cached per corpus."""

    variable_length = False
    relation: str | None = None

    def __init__(self, tokenizer, seq_len: int, relation: str | None, short_seq_prob: float) -> None:
        self.template = Template.from_tokenizer(tokenizer)
        self.seq_len = seq_len
        self.short_seq_prob = float(short_seq_prob)
        if relation is not None:
            self.relation = relation
        self._plans: dict[int, tuple[object, object]] = {}
        if self.max_tokens < 2:
            raise PlmlabError(f"seq_len {seq_len} leaves no room for text next to the special tokens")

    @property
    def label_key(self) -> str | None:
        return LABEL_KEYS.get(self.relation) if self.relation else None

    @property
    def max_tokens(self) -> int:
        return self.seq_len - self.template.single_overhead

    def plan(self, data):
        cached = self._plans.get(id(data))
        if cached is None or cached[0] is not data:
            cached = (data, self.build_plan(data))
            self._plans[id(data)] = cached
        return cached[1]

    def build_plan(self, data):
        raise NotImplementedError

    def num_examples(self, data) -> int:
        return len(self.lengths(data))


class PackedSentences(Layout):
    """FULL-SENTENCES (cross_documents) and DOC-SENTENCES."""

    def __init__(self, tokenizer, seq_len, cross_documents: bool, short_seq_prob: float = 0.0) -> None:
        super().__init__(tokenizer, seq_len, None, short_seq_prob)
        self.cross_documents = cross_documents
        self.variable_length = not cross_documents

    def build_plan(self, data) -> list[list[tuple[int, int]]]:
        """Each example: token ranges [start, end) of the token array, one per document piece."""
        examples: list[list[tuple[int, int]]] = []
        current: list[tuple[int, int]] = []
        used = 0
        offsets, budget = data.sent_offsets, self.max_tokens
        for d in range(data.n_docs):
            new_doc = True
            for s in range(int(data.doc_sents[d]), int(data.doc_sents[d + 1])):
                start, end = int(offsets[s]), int(offsets[s + 1])
                while start < end:
                    extra = int(new_doc and bool(current))  # the separator between documents
                    take = min(end - start, budget) if not current else end - start
                    if used + extra + take > budget:
                        examples.append(current)
                        current, used = [], 0
                        continue
                    if current and not new_doc and current[-1][1] == start:
                        current[-1] = (current[-1][0], start + take)  # same document: extend the piece
                    else:
                        current.append((start, start + take))
                    used += extra + take
                    start += take
                    new_doc = False
            if current and not self.cross_documents:
                examples.append(current)
                current, used = [], 0
        if current:
            examples.append(current)
        return examples

    def lengths(self, data) -> np.ndarray:
        plan = self.plan(data)
        sep = int(self.template.separator is not None)
        return np.array([sum(e - s for s, e in ex) + sep * (len(ex) - 1) + self.template.single_overhead
                         for ex in plan], dtype=np.int64)

    def example(self, data, index: int, rng) -> dict[str, np.ndarray]:
        return self.template.wrap([np.asarray(data.tokens[s:e]) for s, e in self.plan(data)[index]])

    def from_ids(self, ids: np.ndarray, rng, ids_b=None) -> dict[str, np.ndarray]:
        parts = [ids] if ids_b is None else [ids, np.asarray(ids_b, dtype=np.int64)]
        budget = self.max_tokens - (len(parts) - 1)
        a = parts[0][:budget]
        parts = [a] + ([parts[1][: budget - len(a)]] if len(parts) > 1 and budget > len(a) else [])
        return self.template.wrap(parts)


class PairLayout(Layout):
    """Shared by segment-pair and sentence-pair: draw the pair, then wrap it."""

    @property
    def max_tokens(self) -> int:
        return self.seq_len - self.template.pair_overhead

    def num_examples(self, data) -> int:
        if self.relation == "nsp" and data.n_docs < 2:
            raise PlmlabError("next-sentence prediction needs at least two documents (random B segments)")
        return len(self.plan(data))

    def finish(self, a: np.ndarray, b_true: np.ndarray, data, doc: int, target: int, rng) -> dict:
        """Apply the relation (NSP: maybe a random B; SOP: maybe swap), truncate, wrap."""
        label = int(rng.random() < 0.5)
        if label and self.relation == "nsp":
            b_true = self.random_text(data, doc, max(1, target - len(a)), rng)
        elif label:  # SOP: the same two segments in the wrong order
            a, b_true = b_true, a
        a, b = truncate_pair(a, b_true, self.max_tokens, rng)
        out = self.template.wrap_pair(a, b)
        out[self.label_key] = np.asarray(label, dtype=np.int64)
        return out

    def random_text(self, data, doc: int, target: int, rng) -> np.ndarray:
        """Whole sentences from a random start in a random other document, up to `target`."""
        other = int(rng.integers(data.n_docs - 1))
        other += other >= doc
        first, last = int(data.doc_sents[other]), int(data.doc_sents[other + 1])
        start = int(rng.integers(first, last))
        offsets = data.sent_offsets[start: last + 1] - data.sent_offsets[start]
        n = int(np.searchsorted(offsets[1:], target)) + 1  # sentences until >= target tokens
        n = min(n, last - start)
        return np.asarray(data.tokens[int(data.sent_offsets[start]): int(data.sent_offsets[start + n])])

    def from_ids(self, ids: np.ndarray, rng, ids_b=None) -> dict[str, np.ndarray]:
        """The `plmlab objective` view: A = the text, B = --text-b or the text's second part."""
        if ids_b is None:
            if len(ids) < 2:
                raise PlmlabError("a pair objective needs a text of at least two tokens (or --text-b)")
            cut = int(rng.integers(1, len(ids)))
            ids, ids_b = ids[:cut], ids[cut:]
        a, b = np.asarray(ids, dtype=np.int64), np.asarray(ids_b, dtype=np.int64)
        label = int(rng.random() < 0.5) if self.relation == "sop" else 0  # NSP: the given B follows A
        if label:
            a, b = b, a
        a, b = truncate_pair(a, b, self.max_tokens, rng)
        out = self.template.wrap_pair(a, b)
        out[self.label_key] = np.asarray(label, dtype=np.int64)
        return out


class SegmentPairs(PairLayout):
    """SEGMENT-PAIR (BERT's NSP data, ALBERT's SOP data)."""

    def build_plan(self, data) -> list[tuple[int, int, int]]:
        """Chunks (document, first sentence, end sentence) of up to max_tokens tokens each."""
        chunks = []
        for d in range(data.n_docs):
            first, end = int(data.doc_sents[d]), int(data.doc_sents[d + 1])
            if data.doc_offsets[d + 1] - data.doc_offsets[d] < 2:
                continue
            start, length = first, 0
            for s in range(first, end):
                length += int(data.sent_offsets[s + 1] - data.sent_offsets[s])
                if length >= self.max_tokens or s == end - 1:
                    if data.sent_offsets[s + 1] - data.sent_offsets[start] >= 2:
                        chunks.append((d, start, s + 1))
                    start, length = s + 1, 0
        return chunks

    def lengths(self, data) -> np.ndarray:
        return np.array([min(self.seq_len, int(data.sent_offsets[e] - data.sent_offsets[s]) + self.template.pair_overhead)
                         for _, s, e in self.plan(data)], dtype=np.int64)

    def example(self, data, index: int, rng) -> dict[str, np.ndarray]:
        doc, first, end = self.plan(data)[index]
        target = self.max_tokens
        if rng.random() < self.short_seq_prob:
            target = int(rng.integers(2, self.max_tokens + 1))
        sizes = np.diff(data.sent_offsets[first: end + 1])
        k = min(int(np.searchsorted(np.cumsum(sizes), target)) + 1, len(sizes))  # sentences kept
        tokens = np.asarray(data.tokens[int(data.sent_offsets[first]): int(data.sent_offsets[first + k])])
        if k >= 2:  # A = the first a_end sentences, B = the rest of the kept ones
            cut = int(np.cumsum(sizes)[int(rng.integers(1, k)) - 1])
        else:  # one sentence: cut it at a random token
            if len(tokens) < 2:  # a one-token first sentence: take the next one too
                k = min(2, len(sizes))
                tokens = np.asarray(data.tokens[int(data.sent_offsets[first]): int(data.sent_offsets[first + k])])
            cut = int(rng.integers(1, len(tokens)))
        return self.finish(tokens[:cut], tokens[cut:], data, doc, target, rng)


class SentencePairs(PairLayout):
    """SENTENCE-PAIR: A one sentence, B the next one (or, for NSP, one from another document)."""

    variable_length = True

    def build_plan(self, data) -> np.ndarray:
        """Sentences that have a successor in their document."""
        starts, ends = data.doc_sents[:-1], data.doc_sents[1:]
        return np.concatenate([np.arange(s, e - 1) for s, e in zip(starts, ends) if e - s >= 2] or [np.zeros(0, int)])

    def lengths(self, data) -> np.ndarray:
        s = self.plan(data)
        sizes = data.sent_offsets[s + 2] - data.sent_offsets[s] + self.template.pair_overhead
        return np.minimum(sizes, self.seq_len).astype(np.int64)

    def example(self, data, index: int, rng) -> dict[str, np.ndarray]:
        s = int(self.plan(data)[index])
        o = data.sent_offsets
        a, b = np.asarray(data.tokens[o[s]: o[s + 1]]), np.asarray(data.tokens[o[s + 1]: o[s + 2]])
        doc = int(np.searchsorted(data.doc_sents, s, side="right")) - 1
        return self.finish(a, b, data, doc, 1, rng)  # target 1: a random B is one sentence


def make_layout(name: str, allowed: tuple[str, ...], tokenizer, seq_len: int, relation: str,
                short_seq_prob: float) -> Layout:
    if name not in allowed:
        raise PlmlabError(f"input format {name!r} is not available here; choose one of {', '.join(allowed)}")
    if name in ("full-sentences", "doc-sentences"):
        return PackedSentences(tokenizer, seq_len, cross_documents=name == "full-sentences")
    cls = SegmentPairs if name == "segment-pair" else SentencePairs
    return cls(tokenizer, seq_len, relation, short_seq_prob)


def batches_by_tokens(order, lengths: np.ndarray, tokens_per_batch: int) -> list[list[int]]:
    """Split example indices (in `order`) into consecutive batches of at most `tokens_per_batch`
    tokens (at least one example each): DOC-SENTENCES and SENTENCE-PAIR keep tokens per batch
    about constant this way (RoBERTa, section 4.2), short examples making larger batches."""
    batches, current, used = [], [], 0
    for i in order:
        n = int(lengths[i])
        if current and used + n > tokens_per_batch:
            batches.append(current)
            current, used = [], 0
        current.append(int(i))
        used += n
    if current:
        batches.append(current)
    return batches
