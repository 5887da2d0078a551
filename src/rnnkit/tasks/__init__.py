"""Tasks: a dataset, a model, a loss, metrics and a decoder bound under a name.

Each task lives in its own module `rnnkit/tasks/<name>.py`, registers itself with
`@register_task("<name>")` and implements the `Task` protocol (see base.py and
docs/training.md). `get_task(name)` imports the module on first use.
"""
from .base import Batch, LossOutput, Task, TaskCommandError, epoch_generator
from .registry import (DuplicateTaskError, UnknownTaskError, available_tasks, get_task,
                       register_task, unregister_task)

__all__ = ["Task", "Batch", "LossOutput", "TaskCommandError", "epoch_generator", "register_task",
           "get_task", "available_tasks", "unregister_task", "UnknownTaskError", "DuplicateTaskError"]
