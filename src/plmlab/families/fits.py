"""What a model must be, declared as data: which models an objective can train
(`Objective.fits`), and what an evaluation, a pipeline or a training stage takes (SFT, DPO,
distillation, classification, text2text). The one place outside the model core that compares a
config's skeleton and head with wanted values; everything else asks a `Fits` (or `family_of`).

Checked against the run's `Config` before any work (before a tokenizer is trained), so a
mismatch such as causal LM on T5 or span corruption on a decoder is one line that names the
presets that would fit:

    objective clm does not fit this model (an encoder-decoder); it needs a decoder with an LM head,
    e.g. gpt-tiny, llama-tiny, glm-tiny, glm4-tiny
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import PlmlabError
from ..presets import PRESETS, get_preset

_ARTICLE = {"encoder": "an encoder", "encoder-decoder": "an encoder-decoder", "decoder": "a decoder"}


@dataclass(frozen=True)
class Fits:
    """The Config facts an objective needs; None = any value."""

    arch: str  # encoder | decoder | encoder-decoder
    # the output head it trains: lm | mlm, or a tuple of either (MLM trains BERT's MLM head and
    # XLM's plain tied pred_layer, an "lm" head on an encoder, alike)
    head: str | tuple[str, ...] | None = None
    positions: tuple[str, ...] | None = None  # Config.position values (GLM: 2-D positions)
    pair_head: bool = False  # NSP / SOP: needs the pooled 2-logit head
    languages: bool = False  # TLM (XLM): needs language embeddings (Config.n_languages > 0)

    @property
    def heads(self) -> tuple[str, ...]:
        return (self.head,) if isinstance(self.head, str) else tuple(self.head or ())
    # Config.tokenizer styles whose special tokens it needs (BART's <mask>: roberta), since a
    # run trains its tokenizer in the preset's style; None = any
    tokenizers: tuple[str, ...] | None = None

    def problems(self, config) -> list[str]:
        """What in `config` does not fit (empty when it fits)."""
        found = []
        if config.arch != self.arch:
            found.append(_ARTICLE.get(config.arch, config.arch))
        if self.head is not None and config.head not in self.heads:
            found.append(f"head {config.head}")
        if self.positions is not None and config.position not in self.positions:
            found.append(f"{config.position} positions")
        if self.pair_head and not config.pair_head:
            found.append("no pair head")
        if self.languages and not getattr(config, "n_languages", 0):
            found.append("no language embeddings")
        if self.tokenizers is not None and config.tokenizer not in self.tokenizers:
            found.append(f"tokenizer style {config.tokenizer}")
        return found

    def wanted(self) -> str:
        """'a decoder with an LM head and learned-2d or rotary-2d positions'."""
        extras = [f"an {' or '.join(h.upper() for h in self.heads)} head"] if self.head is not None else []
        if self.positions is not None:
            extras.append(f"{' or '.join(self.positions)} positions")
        if self.pair_head:
            extras.append("a pair (NSP/SOP) head")
        if self.languages:
            extras.append("language embeddings")
        if self.tokenizers is not None:
            extras.append(f"a {' or '.join(self.tokenizers)} tokenizer")
        arch = _ARTICLE.get(self.arch, self.arch)
        return f"{arch} with {' and '.join(extras)}" if extras else arch

    def fitting_presets(self, limit: int = 4) -> list[str]:
        """Tiny presets that fit: the examples the error message names."""
        names = [n for n in PRESETS if n.endswith("-tiny") and not self.problems(get_preset(n))]
        return names[:limit]

    def fits(self, config) -> bool:
        return not self.problems(config)

    def require(self, what: str, config) -> None:
        """`what needs ...; this model is ...` where `config` does not fit (evaluations, pipelines)."""
        found = self.problems(config)
        if found:
            raise PlmlabError(f"{what} needs {self.wanted()}; this model is {', '.join(found)}")

    def check(self, objective: str, config) -> None:
        found = self.problems(config)
        if found:
            examples = ", ".join(self.fitting_presets()) or "none of the presets"
            raise PlmlabError(f"objective {objective} does not fit this model ({', '.join(found)}); "
                              f"it needs {self.wanted()}, e.g. {examples}")
