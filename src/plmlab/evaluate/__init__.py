"""Evaluation for every family: perplexity and bits per byte, masked-token accuracy and
pseudo-log-likelihood, span corruption, multiple choice and generation scoring (zero- and
few-shot), a built-in suite, classifier / tagger metrics, and an lm-evaluation-harness adapter
(`plmlab.lmeval`). The `plmlab evaluate` verb is a thin layer over these functions."""

from .result import EvalResult

__all__ = ["EvalResult"]
