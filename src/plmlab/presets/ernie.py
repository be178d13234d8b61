"""ERNIE (Baidu): BERT's network with its own sizes, saved as transformers' `ernie` model type.

ERNIE 1.0 (Sun et al. 2019, section 4.1: "the same model size as BERT-base"): 12 layers,
H = 768, 12 heads, a Chinese vocabulary of 18000, 513 positions, ReLU, LayerNorm eps 1e-5
(PaddlePaddle's default), no task ids (the released `ernie-1.0` configuration). Its knowledge
masking is the objective's `--masking phrase|entity` (objectives/knowledge_masking.py).

ERNIE 3.0 base zh (the released `ernie-3.0-base-zh` configuration): 40000 ids, 2048 positions,
4 token types, GELU, and task-type embeddings (use_task_id, 3 task types). The `ernie-tiny` /
`ernie-mini` presets keep the task-type table so that path is exercised; they are plmlab's CPU
sizes, not PaddleNLP's 3-layer "ernie-tiny" checkpoint.

`notes.hf_model_type = "ernie"`: a fresh model saves as Ernie* (not Bert*), which the task-type
table needs.
"""

from .bert import MINI, TINY, _bert

# the MLM head only: transformers' ErnieForMaskedLM (no pooler, no NSP head)
_MLM = dict(pooler=False, pair_head=False)


def _ernie(n_layers: int, d_model: int, n_heads: int, params: str, **extra) -> dict:
    fields = _bert(n_layers, d_model, n_heads, params, **{**_MLM, **extra})
    return {**fields, "notes": {**fields["notes"], "hf_model_type": "ernie"}}


ERNIE_1 = dict(vocab_size=18000, max_positions=513, activation="relu", norm_eps=1e-5)
ERNIE_3 = dict(vocab_size=40000, max_positions=2048, type_vocab_size=4, task_type_vocab_size=3, norm_eps=1e-5)

PRESETS = {
    "ernie-1.0-base": _ernie(12, 768, 12, "~99M", **ERNIE_1),
    "ernie-3.0-base-zh": _ernie(12, 768, 12, "~118M", **ERNIE_3),
    "ernie-tiny": _ernie(2, 64, 4, "tiny", **{**ERNIE_3, **TINY}),
    "ernie-mini": _ernie(4, 256, 4, "mini", **{**ERNIE_3, **MINI}),
}
