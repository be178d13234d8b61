"""Each family's knowledge beyond its `Config`, in one place (issue 22): the input and prompt
layout hooks that generation, scoring, SFT encoding, chat and serving ask for.

    from plmlab.families import family_of
    family_of(model.config).answers_as_blank     # instead of `config.position in (...)` at the call site

The model core (config.py, presets/, nn/, models/, hf/) keeps what a model *is*: a family's
presets are data in presets/, its Hugging Face layout a rule table in hf/. This package holds
what the code around the model must know to *feed* one. A family that needs nothing beyond its
skeleton's defaults (base.py: most, GPT, LLaMA, Mistral, Qwen2, GLM-4, BERT, T5 ...) has no module
here; docs/adding-a-family.md walks through adding one.
"""

from __future__ import annotations

from .base import CausalInputs, Encoder, EncoderDecoder, Family
from .glm import GLM

# Asked in order, the first that matches answers: a family with hooks of its own before the three
# skeletons' defaults.
FAMILIES: tuple[Family, ...] = (GLM, Family(), EncoderDecoder(), Encoder())

__all__ = ["CausalInputs", "Encoder", "EncoderDecoder", "FAMILIES", "Family", "GLM", "family_of"]


def family_of(config) -> Family:
    """The family hooks of a model's config (`model.config`)."""
    return next(f for f in FAMILIES if f.matches(config))
