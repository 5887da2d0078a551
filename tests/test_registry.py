"""The task registry: a decorator that refuses duplicates; every error path."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import toytask  # noqa: E402,F401

from rnnkit.tasks import (DuplicateTaskError, Task, UnknownTaskError, available_tasks, get_task,  # noqa: E402
                          register_task, unregister_task)


def test_register_and_get():
    @register_task("demo_reg")
    class Demo(Task):
        pass

    try:
        assert get_task("demo_reg") is Demo and Demo.name == "demo_reg"
        assert "demo_reg" in available_tasks() and "toy" in available_tasks()
    finally:
        unregister_task("demo_reg")


def test_duplicate_name_is_refused_and_names_both_classes():
    with pytest.raises(DuplicateTaskError, match=r"'toy' is already registered by toytask.ToyTask; .*Other"):
        @register_task("toy")
        class Other(Task):
            pass
    assert get_task("toy") is toytask.ToyTask  # the first registration is kept


@pytest.mark.parametrize("name", ["", "Toy", "1abc", "a-b", "a b", None])
def test_malformed_names(name):
    with pytest.raises(ValueError, match="task name"):
        register_task(name)


def test_only_task_subclasses():
    with pytest.raises(TypeError, match="expected a subclass of rnnkit.tasks.Task"):
        @register_task("not_a_task")
        class Plain:
            pass
    with pytest.raises(TypeError):
        register_task("fn_task")(lambda: None)


def test_unknown_task_suggests_nearest():
    with pytest.raises(UnknownTaskError, match=r"unknown task 'tyo'; did you mean 'toy'\?.*known tasks: .*toy"):
        get_task("tyo")
    with pytest.raises(UnknownTaskError, match="unknown task 'Not A Name'"):
        get_task("Not A Name")


def test_unregister_unknown():
    with pytest.raises(KeyError):
        unregister_task("never_registered")


def test_base_task_methods_say_what_is_missing():
    from rnnkit.config import load_config
    from rnnkit.tasks import TaskCommandError

    @register_task("bare_reg")
    class Bare(Task):
        pass

    try:
        task = Bare(load_config({"task": "bare_reg"}))
        for call in (task.build_model, lambda: task.train_batches(0), lambda: task.compute_loss(None, None, None)):
            with pytest.raises(NotImplementedError, match="Bare"):
                call()
        assert list(task.valid_batches()) == []
        with pytest.raises(TaskCommandError, match="no sampling"):
            task.sample(None, None)
        with pytest.raises(TaskCommandError, match="no split 'test'"):
            task.eval_batches("test")
    finally:
        unregister_task("bare_reg")
