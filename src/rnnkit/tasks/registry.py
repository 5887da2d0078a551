"""The registry of tasks: names -> Task classes, filled by the `register_task` decorator.

    @register_task("charlm")
    class CharLM(Task): ...

A task module `rnnkit/tasks/<name>.py` is imported on first use of its name, so
`get_task("charlm")` works without importing every task up front. Tasks outside
the package register the same way once their module is imported (the command line's
`--import MODULE`).
"""
from __future__ import annotations

import difflib
import importlib
import re

_TASKS: dict[str, type] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class UnknownTaskError(LookupError):
    """No task is registered under the name asked for."""


class DuplicateTaskError(ValueError):
    """A second class tried to take a name already registered."""


def register_task(name: str):
    """Class decorator: register a Task subclass under `name` and set `cls.name`.

    Raises ValueError for a malformed name, DuplicateTaskError if the name is taken,
    TypeError if the decorated object is not a Task subclass.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"task name {name!r}: expected lower-case letters, digits and _, "
                         "starting with a letter (e.g. 'charlm')")

    def decorate(cls):
        from .base import Task

        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise TypeError(f"@register_task({name!r}) decorates {cls!r}: expected a subclass of "
                            "rnnkit.tasks.Task")
        if name in _TASKS:
            old = _TASKS[name]
            raise DuplicateTaskError(f"task {name!r} is already registered by "
                                     f"{old.__module__}.{old.__qualname__}; "
                                     f"{cls.__module__}.{cls.__qualname__} cannot take the same name")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return decorate


def get_task(name: str) -> type:
    """The Task class registered as `name`, importing rnnkit.tasks.<name> if needed.

    Raises UnknownTaskError naming the registered tasks and the nearest name.
    """
    if name not in _TASKS and isinstance(name, str) and _NAME.match(name):
        try:
            importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__package__}.{name}":  # the module exists but its imports failed
                raise
    if name not in _TASKS:
        known = available_tasks()
        near = difflib.get_close_matches(str(name), known, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        listing = ", ".join(known) if known else "none registered"
        raise UnknownTaskError(f"unknown task {name!r}{hint} (known tasks: {listing})")
    return _TASKS[name]


def available_tasks() -> list[str]:
    """Names of the registered tasks and of the task modules shipped in rnnkit.tasks."""
    import pkgutil

    from . import __path__ as package_path

    shipped = {m.name for m in pkgutil.iter_modules(package_path)
               if not m.name.startswith("_") and m.name not in ("base", "registry")}
    return sorted(set(_TASKS) | shipped)


def unregister_task(name: str) -> None:
    """Remove a registration (for tests and interactive reloading). KeyError if absent."""
    del _TASKS[name]
