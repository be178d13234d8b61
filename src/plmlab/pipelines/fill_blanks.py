"""fill-blanks: GLM blank filling, each [MASK] / [sMASK] / [gMASK] generated in turn with GLM's
2-D positions (plmlab.infill); a text without any mask gets [gMASK] at its end (is continued)."""

from __future__ import annotations

from ..infill import fill_blanks
from .base import Pipeline
from .loading import check_text


class FillBlanks(Pipeline):
    """Each text -> {"input", "text" (every blank filled), "blanks" (each fill), "ids", "blank_ids"}.
    (infill.fill_blanks refuses a model that is not a GLM blank filler, on the first call.)"""

    task = "fill-blanks"
    defaults = dict(max_new_tokens=32, do_sample=False, temperature=1.0, top_k=None, top_p=None, seed=None,
                    use_cache=True)

    def run(self, texts: list[str], **options) -> list[dict]:
        results = []
        for text in texts:
            out = fill_blanks(self.model, self.tokenizer, check_text(text), **options)
            results.append({"input": text, "text": out.text, "blanks": out.blank_texts, "ids": out.ids,
                            "blank_ids": out.blanks})
        return results
