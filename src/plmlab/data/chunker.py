"""Phrases and entities in a list of words: ERNIE 1.0's knowledge units (Sun et al. 2019, section 3.2).

ERNIE takes its phrases from a chunker and its entities from a named-entity recogniser. plmlab
ships neither model, so a user supplies a lexicon (one phrase or entity per line, matched
case-insensitively, longest match first) or these small deterministic rules stand in:

  entities  maximal runs of capitalised words ("Python Software Foundation", "Unicode"),
            without a sentence's capitalised first word unless the run goes on past it
            and without a leading function word ("The Python ..." -> "Python ...")
            (punctuation a word carries is ignored, and trailing punctuation ends a run)
  phrases   maximal runs of 2-4 content words: alphabetic words outside a small list of
            English function words and common verbs ("built-in corpus" is three words here:
            "built", "-", "in", so it is no phrase; "token shards" and "language model" are)

Every span is a half-open range of word indices [i, j).
"""

from __future__ import annotations

import string

from ..errors import PlmlabError

FUNCTION_WORDS = frozenset("""
a an the this that these those some any each every no all both either neither such
i you he she it we they me him her us them my your his its our their mine yours
and or but nor so yet if then else than as because while when where which who whom whose what
of to in on at by for with from into onto over under about above below between through during
before after since until up down out off via per without within upon against among
is are was were be been being am has have had having do does did done can could may might
must shall should will would not also only just very more most less least much many few
there here how why whether however thus hence too again once other another same own
get gets got make makes made use uses used see seen given give gives let lets
""".split())
PHRASE_MAX_WORDS = 4
_SENTENCE_END = frozenset(".!?:;")


def core(word: str) -> str:
    """The word without the punctuation a byte-level BPE word carries ("library." -> "library")."""
    return word.strip(string.punctuation)


def is_content(word: str) -> bool:
    return core(word).isalpha() and core(word).lower() not in FUNCTION_WORDS


def _run_end(words: list[str], i: int, inside) -> int:
    """The end of the run of words from i for which `inside` holds; trailing punctuation ends it."""
    j = i
    while j < len(words) and inside(words[j]):
        j += 1
        if words[j - 1].rstrip(string.punctuation) != words[j - 1]:
            break  # "library." closes the run
    return j


def phrase_spans(words: list[str]) -> list[tuple[int, int]]:
    """Runs of 2-4 content words; a longer run is cut into pieces of 4 from the left."""
    spans, i = [], 0
    while i < len(words):
        j = _run_end(words, i, is_content)
        if j == i:
            i += 1
            continue
        for s in range(i, j, PHRASE_MAX_WORDS):
            e = min(s + PHRASE_MAX_WORDS, j)
            if e - s >= 2:
                spans.append((s, e))
        i = j
    return spans


def _capitalised(word: str) -> bool:
    return core(word)[:1].isupper() and core(word).isalpha()


def entity_spans(words: list[str], sentence_start: list[bool]) -> list[tuple[int, int]]:
    """Runs of capitalised words (see the module docstring); `sentence_start[i]`: word i opens a sentence."""
    spans, i = [], 0
    while i < len(words):
        if not _capitalised(words[i]):
            i += 1
            continue
        j = _run_end(words, i, _capitalised)
        s = i
        while s < j and core(words[s]).lower() in FUNCTION_WORDS:
            s += 1  # "The Python ...": the article is no part of the name
        if s == i and sentence_start[i] and j - i == 1:
            s = j  # a lone capitalised sentence opener is just a sentence opener
        if j > s:
            spans.append((s, j))
        i = j
    return spans


class Lexicon:
    """User phrases / entities, each a tuple of lower-cased words; longest match first."""

    def __init__(self, entries: list[tuple[str, ...]], where: str) -> None:
        self.entries = {e for e in entries if e}
        if not self.entries:
            raise PlmlabError(f"{where}: the lexicon is empty (one phrase or entity per line)")
        self.longest = max(len(e) for e in self.entries)

    @staticmethod
    def read_lines(path: str) -> list[str]:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise PlmlabError(f"cannot read the lexicon {path}: {getattr(e, 'strerror', None) or e} "
                              "(expected a UTF-8 text file, one phrase or entity per line)") from None
        if "\x00" in text:
            raise PlmlabError(f"cannot read the lexicon {path}: not a text file")
        return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]

    def spans(self, words: list[str]) -> list[tuple[int, int]]:
        lowered, spans, i = [core(w).lower() for w in words], [], 0  # "model." matches "model"
        while i < len(words):
            for n in range(min(self.longest, len(words) - i), 0, -1):
                if tuple(lowered[i : i + n]) in self.entries:
                    spans.append((i, i + n))
                    i += n
                    break
            else:
                i += 1
        return spans


def sentence_starts(words: list[str], after_special: list[bool]) -> list[bool]:
    """Word i opens a sentence: the first word, one after a special token, or after . ! ? : ;"""
    return [i == 0 or after_special[i] or words[i - 1][-1:] in _SENTENCE_END for i in range(len(words))]
