"""What every evaluation returns: the task's metrics and, per item, what was scored.

`metrics` holds plain numbers under the names the README documents (`accuracy`,
`accuracy_norm`, `perplexity`, `bits_per_byte`, `n`, ...), so `--json` prints it as it is;
`items` holds one plain dict per scored item for `--out FILE` (JSON lines).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class EvalResult:
    task: str  # perplexity | mlm | span-corruption | choice | generate | classification | ...
    metrics: dict[str, Any]  # JSON-ready numbers (and small lists, e.g. a confusion matrix)
    items: list[dict[str, Any]] = field(default_factory=list)  # per-item scores, JSON-ready

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, **self.metrics}
