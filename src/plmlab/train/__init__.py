"""Pretraining: the trainer, its checkpoints and metrics (`plmlab pretrain`).

    from plmlab.train import PretrainOptions, pretrain
    result = pretrain(PretrainOptions(out="runs/gpt-mini", preset="gpt-mini"))
    result.val_loss, result.baselines["bigram"]["loss"], result.final_dir

Modules: `options` (PretrainOptions), `run` (pretrain: set-up, resume, final model), `loop`
(Trainer), `optim` (AdamW groups, LR schedule), `data` (resumable example order),
`checkpoint` (crash-safe folders), `state` (optimizer/RNG state without pickle), `metrics`
(metrics.jsonl, progress), `baselines` (unigram/bigram), `faults` (test-only fault injection).
"""

from .metrics import read_metrics
from .optim import lr_at, make_optimizer, param_groups
from .options import DEFAULTS, PretrainOptions
from .run import PretrainResult, pretrain

__all__ = ["DEFAULTS", "PretrainOptions", "PretrainResult", "lr_at", "make_optimizer", "param_groups",
           "pretrain", "read_metrics"]
