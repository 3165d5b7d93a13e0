"""The task registry: task name -> `Task`, in one place (like peft's method registry).

Adding a task is a module that defines its `Task` class plus one `register_task` line here.
"""

from __future__ import annotations

from lmforge.tasks.base import Task
from lmforge.tasks.classification_task import ClassificationTask
from lmforge.tasks.generation_task import GenerationTask
from lmforge.tasks.language_modeling_task import LanguageModelingTask

TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add `task` under its name; a second task with the same name is a programming error."""
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is registered twice")
    TASKS[task.name] = task
    return task


def task_names() -> tuple[str, ...]:
    """Every registered task name, in registration order."""
    return tuple(TASKS)


def get_task(name: str) -> Task:
    """The task called `name`; an unknown name raises KeyError listing the registered ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; registered tasks: {', '.join(TASKS)}") from None


register_task(ClassificationTask())
register_task(GenerationTask())
register_task(LanguageModelingTask())
