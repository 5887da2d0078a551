"""The Task protocol: what a task gives the trainer and the command line.

A task binds data, a model, a loss and its metrics under a name. The trainer
knows nothing else about a task than these methods (docs/training.md has a
worked example):

    @register_task("mytask")
    class MyTask(Task):
        DataConfig = MyData          # frozen dataclasses deriving from rnnkit.config.Section,
        ModelConfig = MyModel        # typed by the recipe's data: and model: sections

        def prepare_data(self): ...                        # build splits; fit vocab/scaler
        def save_assets(self, directory): ...              # vocab.json, scaler.json
        def load_assets(self, directory): ...
        def build_model(self) -> nn.Module: ...
        def train_batches(self, epoch) -> Iterable[Batch]: ...
        def valid_batches(self) -> Iterable[Batch]: ...
        def compute_loss(self, model, batch, state) -> LossOutput: ...

Calling order, training afresh:  prepare_data, save_assets, build_model, then
train_batches/valid_batches/compute_loss in the loop. Resuming or evaluating:
load_assets (from the checkpoint), prepare_data, build_model. Sampling:
load_assets, build_model (no data).
"""
from __future__ import annotations

import argparse
import difflib
from pathlib import Path
from typing import Any, ClassVar, Iterable

import torch
from torch import nn

from ..config import Config, ConfigError, EmptyConfig
from ..train.batch import Batch, LossOutput
from ..train.tbptt import StreamBatches, detach_state, mask_state, run_with_resets

__all__ = ["Task", "Batch", "LossOutput", "TaskCommandError", "StreamBatches",
           "run_with_resets", "mask_state", "detach_state", "epoch_generator"]


class TaskCommandError(RuntimeError):
    """A command the task does not offer (e.g. `sample` for a classifier)."""


def check_cell(name: str) -> None:
    """A ConfigError for `model.cell` when no cell of that name is registered, naming the
    nearest one. For the `check` of every task's ModelConfig."""
    from ..cells import cell_names

    names = cell_names()
    if name not in names:
        near = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError("cell", name, "one of " + ", ".join(names) + hint)


def cell_options(model_config) -> dict:
    """The cell keyword arguments a task's ModelConfig sets: `variant` and `nonlinearity`
    where non-empty, `forget_bias` where not None (each only if the section has it)."""
    options = {key: value for key in ("variant", "nonlinearity") if (value := getattr(model_config, key, ""))}
    if getattr(model_config, "forget_bias", None) is not None:
        options["forget_bias"] = model_config.forget_bias
    return options


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A torch.Generator for shuffling epoch `epoch`: a function of (seed, epoch) only.

    Using it (not the global RNG) keeps the order of batches reproducible, so a
    resumed run can skip to its position in an epoch and see the same batches.
    """
    g = torch.Generator()
    g.manual_seed(seed * 1_000_003 + epoch)
    return g


class Task:
    """Base class of every task; subclass it and register it with `@register_task(name)`.

    Class attributes:
        name: set by the registry decorator.
        DataConfig, ModelConfig: frozen `rnnkit.config.Section` dataclasses for the
            recipe's `data:` and `model:` sections (default: no options).
        unit: what `Batch.size` counts, shown in the progress line ("tok", "seq").

    `self.config` is the whole run `Config`; `self.data_config` and
    `self.model_config` are its task sections.
    """

    name: ClassVar[str] = ""
    DataConfig: ClassVar[type] = EmptyConfig
    ModelConfig: ClassVar[type] = EmptyConfig
    unit: ClassVar[str] = "tok"

    def __init__(self, config: Config):
        self.config = config

    @property
    def data_config(self) -> Any:
        return self.config.data

    @property
    def model_config(self) -> Any:
        return self.config.model

    # --------------------------------------------------------------- data and assets

    def prepare_data(self) -> None:
        """Build the data splits. Fit the vocabulary/scaler here unless load_assets set them."""

    def save_assets(self, directory: Path) -> None:
        """Write what the task needs besides weights (vocab.json, scaler.json) into `directory`."""

    def load_assets(self, directory: Path) -> None:
        """Read back what save_assets wrote."""

    # --------------------------------------------------------------- model

    def build_model(self) -> nn.Module:
        """A new model from `self.model_config` (and the vocabulary size etc.)."""
        raise NotImplementedError(f"{type(self).__name__}.build_model")

    # --------------------------------------------------------------- batches

    def train_batches(self, epoch: int) -> Iterable[Batch]:
        """The training batches of epoch `epoch` (0-based), global (all ranks' rows).

        The order must depend only on the config (seed) and `epoch` — use
        `epoch_generator(seed, epoch)` to shuffle — so that a resumed run can skip to
        its position. Streamed tasks yield consecutive (N, trainer.bptt) chunks with
        `carry=True` and a `reset` mask (`StreamBatches` does this); others yield
        whole sequences (full BPTT). An object with `len()` lets the progress line
        show an ETA.
        """
        raise NotImplementedError(f"{type(self).__name__}.train_batches")

    def valid_batches(self) -> Iterable[Batch]:
        """The validation batches (same order every time). Default: none (no evaluation)."""
        return ()

    def eval_batches(self, split: str) -> Iterable[Batch]:
        """Batches of a named split for `rnnkit eval`; 'valid' by default."""
        if split == "valid":
            return self.valid_batches()
        raise TaskCommandError(f"task {self.name!r} has no split {split!r} (it has: valid)")

    # --------------------------------------------------------------- loss

    def compute_loss(self, model: nn.Module, batch: Batch, state: Any) -> LossOutput:
        """Loss, metrics and final state of `model` on `batch`, starting from `state`.

        `model` may be wrapped in DistributedDataParallel: call `model(...)` (its
        forward), not its submodules, so gradients are synchronised. `state` is the
        detached final state of the previous chunk when the previous batch had
        `carry=True`, else None. Apply `batch.reset` (`run_with_resets`) so a new
        document starts from a zero state. The loss is the mean over `batch.size` items.
        """
        raise NotImplementedError(f"{type(self).__name__}.compute_loss")

    def summarize(self, metrics: dict[str, float]) -> dict[str, float]:
        """Add derived metrics to averaged ones (e.g. perplexity = exp(loss)). Default: as is."""
        return metrics

    # --------------------------------------------------------------- command line

    @classmethod
    def add_arguments(cls, command: str, parser: argparse.ArgumentParser) -> None:
        """Add task-specific options to `rnnkit eval`, `sample` or `predict` (command names it)."""

    def sample(self, model: nn.Module, args: argparse.Namespace) -> None:
        """`rnnkit sample RUN_DIR ...`: generate from a trained model (print to stdout)."""
        raise TaskCommandError(f"task {self.name!r} has no sampling; `rnnkit sample` is for tasks "
                               "that generate (charlm, music, seq2seq)")

    def predict(self, model: nn.Module, args: argparse.Namespace) -> None:
        """`rnnkit predict RUN_DIR ...`: the model's answers for new data (print or write them)."""
        raise TaskCommandError(f"task {self.name!r} has no prediction for new data; `rnnkit predict` "
                               "is for tasks that read new inputs (classify, tag)")

    def evaluate_split(self, model: nn.Module, split: str, args: argparse.Namespace, *,
                       device: torch.device, precision: str = "fp32") -> dict[str, float]:
        """`rnnkit eval`'s metrics of `model` on `split`. Default: `evaluate` over
        `eval_batches(split)`; a task with eval options of its own overrides this."""
        from ..train.trainer import evaluate

        return evaluate(self, model, self.eval_batches(split), device=device, precision=precision)

    def report(self, metrics: dict[str, float], args: argparse.Namespace) -> None:
        """`rnnkit eval` output after the metrics are computed. Default: one 'name value' line each."""
        for key, value in metrics.items():
            print(f"{key} {value:.6g}")
