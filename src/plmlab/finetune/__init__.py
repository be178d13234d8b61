"""Fine-tuning: a registry of tasks (`tasks.py`) trained by the one Trainer (`run.py`).

    plmlab finetune --model DIR --task classification --train train.csv --eval dev.csv --out run/
"""

from .options import FinetuneOptions
from .run import finetune
from .tasks import TASKS, Task, get_task, register_task, task_names

__all__ = ["FinetuneOptions", "finetune", "TASKS", "Task", "get_task", "register_task", "task_names"]
