"""Pretraining: the trainer, its checkpoints and metrics (`plmlab pretrain`).

    from plmlab.train import PretrainOptions, pretrain
    result = pretrain(PretrainOptions(out="runs/gpt-mini", preset="gpt-mini"))
    result.val_loss, result.baselines["bigram"]["loss"], result.final_dir

Modules: `loop` (the one Trainer every kind of training runs through: pretraining here,
fine-tuning in plmlab.finetune), `task` (the one task protocol; PretrainTask), `options`
(PretrainOptions, frozen), `run` (pretrain), `pretrain_setup` (fresh or resumed set-up),
`finish` (final evaluation, baselines, sample), `parallel` (Dist, DDP / FSDP2 `parallelize`),
`precision`, `flops` (MFU), `signals`, `optim` (AdamW groups, LR schedules), `data` and
`batching` (resumable example order), `rundir` (lock, refusals), `saving` (checkpoints,
final/), `checkpoint` (crash-safe folders), `state` (optimizer/RNG state without pickle),
`metrics` (metrics.jsonl, progress), `baselines` (unigram/bigram).
"""

from .metrics import read_metrics
from .optim import lr_at, make_optimizer, param_groups
from .options import DEFAULTS, PretrainOptions
from .run import PretrainResult, pretrain

__all__ = ["DEFAULTS", "PretrainOptions", "PretrainResult", "lr_at", "make_optimizer", "param_groups",
           "pretrain", "read_metrics"]
