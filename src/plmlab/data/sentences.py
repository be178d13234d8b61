"""Rule-based sentence splitting for English (and CJK) prose.

Sentences matter to the objectives: NSP/SOP pick sentence pairs, and the token shards keep a
sentence index. A statistical splitter (punkt, spaCy) would be a heavy dependency for little gain
on documentation text, so this is the classic rule set:

* a sentence ends at ``.``, ``!`` or ``?`` (possibly repeated, possibly followed by closing quotes
  or brackets) when whitespace and then an upper-case letter, a digit, an opening quote or bracket
  follows;
* ... except after common abbreviations (``e.g.``, ``i.e.``, ``etc.``, ``Mr.``, ``Dr.`` ...),
  single-letter initials (``J. Smith``) and dotted acronyms (``U.S.``), and not at an ellipsis
  (``...`` or ``…``: the sentence usually goes on);
* decimal numbers (``3.14``) never split, because no whitespace follows the dot;
* a CJK sentence ends at ``。！？`` (plus closing quotes) whatever follows, since CJK text puts
  no space between sentences;
* blank lines always end a sentence (they separate paragraphs); single newlines are just spaces.
"""

from __future__ import annotations

import re

# Lower-cased, without the final dot. "no" catches "No. 5"; "al" catches "et al.".
ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof sr jr st mt vs etc e.g i.e cf viz al approx dept est fig figs eq eqs
    no nos vol vols pp ch sec cap art ed eds rev inc ltd co corp jan feb mar apr jun jul aug
    sep sept oct nov dec gen gov sen rep col lt sgt capt cmdr adm
    """.split()
)

_CLOSERS = "\"'”’»)]}」』"
# Candidate boundary: end punctuation, optional closers, whitespace, then a sentence-opening char
# (quote, bracket, upper-case Latin letter, digit, or a CJK character).
_OPENERS = "\"'“‘«(\\[A-Z0-9À-ÖØ-Þ\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
_LATIN_END = re.compile(r"([.!?]+|…)([" + re.escape(_CLOSERS) + r"]*)(\s+)(?=[" + _OPENERS + "])")
# CJK sentence end: split right after it (and after any closing quotes), whatever follows.
_CJK_END = re.compile(r"[。！？]+[" + re.escape(_CLOSERS) + r"]*")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_WORD_BEFORE = re.compile(r"(\S+)$")
_ACRONYM = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]$")  # "U.S", "e.g" (the last dot is the match)


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences; whitespace inside a sentence is collapsed to one space.

    >>> split_sentences("Dr. Smith paid $3.50, e.g. for tea. Then he left! 你好。再见")
    ['Dr. Smith paid $3.50, e.g. for tea.', 'Then he left!', '你好。', '再见']
    """
    sentences: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        paragraph = " ".join(paragraph.split())
        if paragraph:
            for latin in _split_latin(paragraph):
                sentences.extend(_split_cjk(latin))
    return sentences


def _split_latin(paragraph: str) -> list[str]:
    pieces, start = [], 0
    for match in _LATIN_END.finditer(paragraph):
        if _is_boundary(paragraph, match):
            pieces.append(paragraph[start : match.start(3)])
            start = match.end()
    pieces.append(paragraph[start:])
    return [p.strip() for p in pieces if p.strip()]


def _is_boundary(text: str, match: re.Match) -> bool:
    punct = match.group(1)
    if punct == "…" or punct.startswith(".."):
        return False  # an ellipsis usually continues the sentence
    if punct != ".":
        return True  # "!", "?", "?!" ...
    word = _WORD_BEFORE.search(text, 0, match.start(1))
    if word is None:
        return True
    token = word.group(1).lstrip("\"'“‘«([{")
    if token.lower() in ABBREVIATIONS or _ACRONYM.match(token):
        return False
    # A single letter before the dot is an initial ("J. Smith"), not a sentence end; "I" is
    # far more often the pronoun.
    return not (len(token) == 1 and token.isalpha() and token != "I")


def _split_cjk(sentence: str) -> list[str]:
    pieces, start = [], 0
    for match in _CJK_END.finditer(sentence):
        pieces.append(sentence[start : match.end()])
        start = match.end()
    pieces.append(sentence[start:])
    return [p.strip() for p in pieces if p.strip()]
