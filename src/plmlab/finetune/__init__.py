"""Fine-tuning: a registry of tasks (`tasks.py`) driven by one loop (`loop.py`).

    plmlab finetune --model DIR --task classification --train train.csv --eval dev.csv --out run/
"""

from .loop import FinetuneOptions, finetune
from .tasks import TASKS, Task, get_task, register_task, task_names

__all__ = ["FinetuneOptions", "finetune", "TASKS", "Task", "get_task", "register_task", "task_names"]
