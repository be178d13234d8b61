"""What the objective says about a batch beyond the loss: accuracies, count-weighted over batches.

Each objective declares its metrics (`Objective.metrics(batch, output)`): accuracies, each with
the count that weights it under its own name (`mlm_accuracy` + `mlm_count`, `nsp_accuracy` +
`nsp_count`, `token_accuracy` + `token_count`); `Averager` sums them over the validation batches
(or a step's micro-batches) into exact count-weighted means: `val_mlm_accuracy`,
`val_nsp_accuracy`, `val_token_accuracy`... An accuracy without its count weighs 1.
"""

from __future__ import annotations

import torch


def batch_metrics(objective, batch: dict, output) -> dict[str, float]:
    """The objective's (or a task's) metrics of one batch ({} when it has none or they fail to apply)."""
    metrics = getattr(objective, "metrics", None)
    if metrics is None or getattr(output, "logits", None) is None:
        return {}
    with torch.no_grad():
        return dict(metrics(batch, output) or {})


MEANS = ("_accuracy", "_mean")  # count-weighted: X_accuracy and X_mean by X_count


class Averager:
    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            if not key.endswith(MEANS):
                continue
            name = key.removesuffix("_accuracy").removesuffix("_mean")
            count = int(values.get(f"{name}_count", 1))
            if count <= 0:
                continue
            shown = name if key.endswith("_mean") else key  # reward_margin_mean -> reward_margin
            self.sums[shown] = self.sums.get(shown, 0.0) + float(value) * count
            self.counts[shown] = self.counts.get(shown, 0) + count

    def result(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{key}": round(self.sums[key] / self.counts[key], 6) for key in self.sums}


def accuracy_text(record: dict, prefix: str = "val_") -> str:
    """' val_mlm_acc 0.312 val_nsp_acc 0.55' for a progress line ('' when there are none)."""
    return "".join(f" {key.removesuffix('uracy')} {value:.3f}" for key, value in record.items()
                   if key.startswith(prefix) and key.endswith("_accuracy") and isinstance(value, float))
