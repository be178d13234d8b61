"""ERNIE 1.0's knowledge masking (Sun et al. 2019, section 3.2): phrases or entities as units.

ERNIE trains in stages: basic-level masking (BERT's, on words), then phrase-level, then
entity-level. At the phrase (entity) level, "all the basic units in the same phrase" are
masked and predicted together. Here `--masking phrase|entity` makes every phrase (entity) of
an example one selection unit and every other word a unit of its own (the basic level
underneath), then selects units until 15 % of the tokens are chosen; one draw per unit decides
80 % [MASK] over the whole unit, 10 % random tokens, 10 % kept (`UnitMasker`).

`--masking staged` runs the three stages in one run (`StagedMasker`): basic masking (plmlab's
dynamic masking, with --whole-word for the paper's English word units), then phrase, then
entity masking, switching at fractions `stages` of the run's steps. The paper (section 3.2)
gives the order, each stage starting from the previous stage's model, but not the split, and
the ERNIE repository ships no stage schedule; the default is thirds. The same stages as three
runs: `--masking dynamic`, then `--init-from` that run with `--masking phrase`, then `entity`.

Phrases and entities come from `--lexicon FILE` (one a line) or the built-in rules of
`data/chunker.py`; either works on the words of the token ids (pieces joined as whole words,
see `Masker.word_units`), so the same units are found in training and in `plmlab objective`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..data.chunker import Lexicon, core, entity_spans, phrase_spans, sentence_starts
from ..errors import PlmlabError
from .masking import DEFAULT_STAGES, Masker, UnitMasker

LEVELS = ("basic", "phrase", "entity")  # ERNIE 1.0's stages, in training order


class KnowledgeMasker(UnitMasker):
    """Word units merged into phrase / entity units (`options.masking` says which)."""

    def __init__(self, tokenizer, options) -> None:
        super().__init__(tokenizer, options)
        self.tokenizer, self.level = tokenizer, options.masking
        self.lexicon = None
        if options.lexicon:
            entries = [self._words_of(line) for line in Lexicon.read_lines(options.lexicon)]
            self.lexicon = Lexicon(entries, options.lexicon)
        elif self.level == "entity" and tokenizer.decode(tokenizer.encode("Zq Xv", add_special_tokens=False)) != "Zq Xv":
            raise PlmlabError("entity masking's built-in chunker finds capitalised names, but this tokenizer "
                              "lower-cases its input: give --lexicon FILE (one entity per line)")

    def _words_of(self, text: str) -> tuple[str, ...]:
        """The lower-cased words of a text as the tokenizer splits it (a lexicon entry)."""
        ids = np.asarray(self.tokenizer.encode(" " + text, add_special_tokens=False), dtype=np.int64)
        cand = np.flatnonzero(self.candidates(ids))
        return tuple(core(w).lower() for w in self._texts(ids, *self.word_units(ids, cand)))

    def _texts(self, ids: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[str]:
        return [self.tokenizer.decode(ids[s:e].tolist()).strip() for s, e in zip(starts, ends)]

    def knowledge_spans(self, ids: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[tuple[int, int]]:
        """Phrase / entity spans over the word units [starts, ends), as word-index ranges."""
        words = self._texts(ids, starts, ends)
        if self.lexicon is not None:
            return self.lexicon.spans(words)
        if self.level == "phrase":
            return phrase_spans(words)
        special = ~self.candidates(ids)
        after_special = [s == 0 or bool(special[s - 1]) for s in starts]
        return entity_spans(words, sentence_starts(words, after_special))

    def units(self, ids: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        starts, ends = self.word_units(ids, cand)  # the basic level: words
        keep = np.ones(len(starts), dtype=bool)
        merged_ends = ends.copy()
        for i, j in self.knowledge_spans(ids, starts, ends):
            if np.all(starts[i + 1 : j] == ends[i : j - 1]):  # adjacent words only (no special between)
                merged_ends[i] = ends[j - 1]
                keep[i + 1 : j] = False
        return starts[keep], merged_ends[keep]

    def view(self, ids: np.ndarray) -> dict:
        """The phrases / entities found in the text: [start, end) token ranges and their text."""
        ids = np.asarray(ids, dtype=np.int64)
        cand = np.flatnonzero(self.candidates(ids))
        starts, ends = self.word_units(ids, cand)
        spans = [(int(starts[i]), int(ends[j - 1])) for i, j in self.knowledge_spans(ids, starts, ends)]
        return {"masking": self.level, "knowledge_source": "lexicon" if self.lexicon else "built-in chunker",
                "knowledge_units": [[s, e, self.tokenizer.decode(ids[s:e].tolist()).strip()] for s, e in spans]}


class StagedMasker(Masker):
    """ERNIE 1.0's three levels over one run: the level of an example is that of the step its
    batch is for, so the run stays a pure function of (seed, step, epoch, index) and resumes
    bit-identically across a stage boundary. Before the Trainer attaches (validation batches,
    `plmlab objective`) the level is that of fraction `stage_at` (default 0: basic), so the
    validation loss is measured under basic masking throughout, as in a basic-masking run.

        step:   1 ............ a*M | a*M+1 ........ b*M | b*M+1 ........ M
        level:  basic              | phrase             | entity             (stages = (a, b))
    """

    def __init__(self, tokenizer, options) -> None:
        super().__init__(tokenizer, options)
        self.stages = options.stages
        plain = {"stages": DEFAULT_STAGES, "stage_at": None}  # each level's own options are not staged
        self.levels = [Masker(tokenizer, options)] + [
            KnowledgeMasker(tokenizer, dataclasses.replace(options, masking=level, **plain)) for level in LEVELS[1:]]
        self.step_of, self.max_steps = None, None

    def follow_steps(self, step_of, max_steps: int) -> None:
        self.step_of, self.max_steps = step_of, max_steps

    def level(self) -> int:
        """0 basic, 1 phrase, 2 entity: how many stage boundaries lie before this step."""
        if self.step_of is None:
            return sum((self.options.stage_at or 0.0) >= b for b in self.stages)
        # stage k begins after ceil(b_k * M) steps (the epsilon keeps 1/3 * 6 from rounding up to 3)
        return sum(self.step_of() > math.ceil(b * self.max_steps - 1e-9) for b in self.stages)

    def corrupt(self, ids, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return self.levels[self.level()].corrupt(ids, rng)

    def view(self, ids: np.ndarray) -> dict:
        level = self.level()
        shown = self.levels[level].view(ids) if level else {}
        return {**shown, "masking": "staged", "stage": LEVELS[level], "stages": list(self.stages)}
