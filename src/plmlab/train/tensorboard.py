"""Optional TensorBoard scalars next to metrics.jsonl.

    tb = TensorBoardLogger(out / "tensorboard")   # a no-op when tensorboard is not installed
    tb.log(record, step)                           # every finite number in the record
    tb.close()

TensorBoard is an optional extra (`pip install tensorboard`): without it the logger has
`available=False`, says why in `reason`, and does nothing, so the training loop needs no `if`.
Tags are the metrics.jsonl keys (`loss`, `val_loss`, `lr`, ...), the same names `plmlab plot
--metrics` takes.
"""

from __future__ import annotations

import math
from pathlib import Path


class TensorBoardLogger:
    """Writes a record's numeric fields as scalars with torch.utils.tensorboard.SummaryWriter."""

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self.writer = None
        self.available = False
        self.reason = ""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch.utils.tensorboard raises it when the tensorboard package is missing
            self.reason = "TensorBoard logging needs the tensorboard package: pip install tensorboard"
            return
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.available = True

    def log(self, record: dict, step: int) -> None:
        """Every finite int/float field except `step` (bools and "nan" strings are skipped)."""
        if self.writer is None:
            return
        for key, value in record.items():
            if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(key, value, global_step=step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Flush and close; later calls to log() do nothing."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
