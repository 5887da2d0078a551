"""Checkpoint directories: written whole under a temporary name, swapped in by renames.

A checkpoint is a directory (`RUN_DIR/last`, `RUN_DIR/best`):

    config.yaml          the resolved run config, with its format version
    model.safetensors    the weights (safetensors: no pickle)
    vocab.json ...       the task's assets (Task.save_assets)
    training_weights.safetensors
                         with weight averaging (trainer.ema_decay): the weights the
                         optimiser moves, while model.safetensors holds their average
    optimizer.pt         optimiser state       (torch.save; read with weights_only=True)
    scheduler.pt         schedule state        (torch.save; read with weights_only=True)
    carry.safetensors    the carried truncated-BPTT state of each rank, if any
    trainer_state.json   step, epoch, position in the epoch, best metric, RNG states
                         of every rank, model signature; written LAST: a directory
                         holding it is complete

Saving `NAME` (crash-safe against SIGKILL at any instant):
  1. write everything into `NAME.tmp-XXXX/`, fsync each file and the directory;
  2. rename the current `NAME/` to `NAME.old-XXXX/` (the trash);
  3. rename `NAME.tmp-XXXX/` to `NAME/`, fsync the parent directory;
  4. delete the trash and any leftovers of earlier crashed saves.
A kill before 2 leaves `NAME/` as it was; between 2 and 3 there is no `NAME/`,
but two complete directories (`.tmp-` newer, `.old-` older); after 3 `NAME/` is
the new one. `find_checkpoint` reads through all of these states without
changing anything: it takes `NAME/` if present, else the complete candidate with
the highest step.
"""
from __future__ import annotations

import base64
import json
import os
import random
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from ..config import FORMAT_VERSION, diff_configs

STATE_FILE = "trainer_state.json"
MODEL_FILE = "model.safetensors"
CARRY_FILE = "carry.safetensors"
TRAINING_WEIGHTS_FILE = "training_weights.safetensors"
CHECKPOINT_NAMES = ("last", "best")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here; the message says what differs."""


# ----------------------------------------------------------------------------- RNG states


def rng_state() -> dict:
    """This process's python, numpy and torch (CPU and CUDA) RNG states, as JSON-ready data."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(mt), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii"),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode("ascii")
                         for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state()` returned."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_bytes_tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_bytes_tensor(s) for s in state["cuda"]])


def _bytes_tensor(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


# ----------------------------------------------------------------------------- signatures


def model_signature(model: torch.nn.Module) -> dict[str, list]:
    """{parameter or buffer name: [*shape, dtype]} for every tensor in the state dict."""
    return {name: [*t.shape, str(t.dtype).removeprefix("torch.")] for name, t in model.state_dict().items()}


def _signature_diff(saved: dict, current: dict) -> list[str]:
    lines = []
    for name in sorted(set(saved) | set(current)):
        if name not in current:
            lines.append(f"{name}: in the checkpoint, not in the model")
        elif name not in saved:
            lines.append(f"{name}: in the model, not in the checkpoint")
        elif list(saved[name]) != list(current[name]):
            lines.append(f"{name}: checkpoint {_shape(saved[name])}, model {_shape(current[name])}")
    return lines


def _shape(sig: list) -> str:
    return f"{tuple(sig[:-1])} {sig[-1]}"


# ----------------------------------------------------------------------------- writing


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # directories cannot be opened on some systems (Windows)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(target: str | Path, *, config: dict, model: torch.nn.Module,
                    trainer_state: dict, optimizer: torch.optim.Optimizer | None = None,
                    scheduler_state: dict | None = None, carry: dict[str, torch.Tensor] | None = None,
                    save_assets: Callable[[Path], None] | None = None,
                    training_weights: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a checkpoint directory at `target` atomically (see the module docstring).

    Args:
        target: the checkpoint directory, e.g. RUN_DIR/last.
        config: the resolved config mapping (config_to_dict), written as config.yaml.
        model: the unwrapped module; its state dict goes to model.safetensors.
        trainer_state: JSON-ready mapping holding at least "step" (how far training got);
            the format version and model signature are added.
        optimizer, scheduler_state: saved with torch.save (tensors and plain data only).
        carry: named tensors of the carried recurrent state, or None.
        save_assets: writes the task's assets (vocab.json, ...) into a directory.
        training_weights: with weight averaging, the trained weights (`model` then holds the average).
    Returns the target path.
    """
    import yaml

    if "step" not in trainer_state:
        raise ValueError("trainer_state needs a 'step' entry")
    target = Path(target)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = parent / f"{target.name}.tmp-{tag}"
    tmp.mkdir()
    (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False, default_flow_style=None))
    save_model(_unwrap(model), str(tmp / MODEL_FILE), metadata={"format_version": str(FORMAT_VERSION)})
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    if scheduler_state is not None:
        torch.save(scheduler_state, tmp / "scheduler.pt")
    if carry:
        save_file({k: v.detach().contiguous().cpu() for k, v in carry.items()}, str(tmp / CARRY_FILE))
    if training_weights is not None:
        save_file({k: v.detach().contiguous().cpu() for k, v in training_weights.items()},
                  str(tmp / TRAINING_WEIGHTS_FILE))
    if save_assets is not None:
        save_assets(tmp)
    for path in tmp.iterdir():
        if path.is_file():
            _fsync_file(path)
    state = {"format_version": FORMAT_VERSION, **trainer_state, "model_signature": model_signature(_unwrap(model))}
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))  # last: marks the directory complete
    _fsync_file(tmp / STATE_FILE)
    _fsync_dir(tmp)

    trash = parent / f"{target.name}.old-{tag}"
    if target.exists():
        os.replace(target, trash)
    os.replace(tmp, target)
    _fsync_dir(parent)
    for leftover in _candidates(target):  # this save's trash and any crashed save's remains
        shutil.rmtree(leftover, ignore_errors=True)
    return target


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a small file so that a reader (or a crash) sees the old or the new content, never half."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def _candidates(target: Path) -> list[Path]:
    return sorted(p for p in target.parent.glob(f"{target.name}.*-*")
                  if p.is_dir() and (".tmp-" in p.name or ".old-" in p.name))


# ----------------------------------------------------------------------------- finding and reading


def read_state(path: str | Path) -> dict:
    """trainer_state.json of checkpoint directory `path`."""
    return json.loads((Path(path) / STATE_FILE).read_text())


def _complete(path: Path) -> int | None:
    """The step of a complete checkpoint directory, or None if incomplete."""
    try:
        return int(read_state(path)["step"])
    except (OSError, ValueError, KeyError):
        return None


def find_checkpoint(path: str | Path, prefer: tuple[str, ...] = CHECKPOINT_NAMES) -> Path | None:
    """The checkpoint to read for `path`, or None if there is none.

    `path` is a checkpoint directory (it holds trainer_state.json) or a run
    directory, where the first of `prefer` that exists is taken ('last', 'best').
    Reads only: the remains of a save interrupted between its two renames are
    used where they are, the newest complete one first.
    """
    path = Path(path)
    if (path / STATE_FILE).exists():
        return path
    for name in prefer:
        target = path / name
        if (target / STATE_FILE).exists():
            return target
        found = [(step, p) for p in _candidates(target) if (step := _complete(p)) is not None]
        if found:
            return max(found)[1]
    return None


def check_compatible(path: Path, state: dict, *, task: str | None = None, model_config: dict | None = None,
                     model: torch.nn.Module | None = None, saved_config: dict | None = None,
                     model_defaults: dict | None = None) -> None:
    """Raise CheckpointError saying what differs between a checkpoint and the current run.

    A model key absent from the checkpoint's config is fine when the current value is
    its default (`model_defaults`): an option added since the checkpoint was written.
    """
    version = state.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {version}; this rnnkit reads "
                              f"format version {FORMAT_VERSION}")
    saved_config = saved_config if saved_config is not None else read_config(path)
    problems = []
    if task is not None and saved_config.get("task") != task:
        problems.append(f"task: checkpoint {saved_config.get('task')!r}, current {task!r}")
    if model_config is not None:  # a key the checkpoint lacks came with a later rnnkit: its default held then
        defaults = model_defaults or {}
        problems += [f"model.{key}: checkpoint {old!r}, current {new!r}"
                     for key, old, new in diff_configs(saved_config.get("model") or {}, model_config)
                     if not (old == "<absent>" and key in defaults and defaults[key] == new)]
    if model is not None:
        problems += _signature_diff(state.get("model_signature", {}), model_signature(_unwrap(model)))
    if problems:
        raise CheckpointError(f"checkpoint {path} does not match this model:\n  " + "\n  ".join(problems))


def read_config(path: str | Path) -> dict:
    import yaml

    return yaml.safe_load((Path(path) / "config.yaml").read_text())


def load_checkpoint(path: str | Path, model: torch.nn.Module, *,
                    optimizer: torch.optim.Optimizer | None = None, task: str | None = None,
                    model_config: dict | None = None, model_defaults: dict | None = None,
                    device: torch.device | str = "cpu") -> dict:
    """Load weights (and optimiser state) from checkpoint directory `path`; return trainer_state.

    Checks the format version, the task, the model config and the parameter names
    and shapes first, and raises CheckpointError listing every difference. Nothing
    is unpickled: safetensors for tensors, JSON, and torch.load(weights_only=True).
    """
    path = Path(path)
    state = read_state(path)
    check_compatible(path, state, task=task, model_config=model_config, model=model, model_defaults=model_defaults)
    missing, unexpected = load_model(_unwrap(model), str(path / MODEL_FILE), strict=True, device=str(device))
    if optimizer is not None and (path / "optimizer.pt").exists():
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
    return state


def load_scheduler_state(path: str | Path) -> dict | None:
    path = Path(path) / "scheduler.pt"
    return torch.load(path, weights_only=True) if path.exists() else None


def load_training_weights(path: str | Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor] | None:
    """The trained weights beside a weight-averaged checkpoint's average, or None when it has none."""
    path = Path(path) / TRAINING_WEIGHTS_FILE
    return load_file(str(path), device=str(device)) if path.exists() else None


def load_carry(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path) / CARRY_FILE
    return load_file(str(path)) if path.exists() else {}


def count_parameters(path: str | Path) -> int:
    """Number of weights in a checkpoint's model.safetensors, read from its header only."""
    total = 0
    with safe_open(str(Path(path) / MODEL_FILE), framework="pt") as f:
        for key in f.keys():
            shape = f.get_slice(key).get_shape()
            total += int(np.prod(shape)) if shape else 1
    return total


def pack_state(state: Any, prefix: str) -> dict[str, torch.Tensor]:
    """A carried recurrent state (tensor, tuple of tensors or None) as named tensors."""
    if state is None:
        return {}
    if isinstance(state, torch.Tensor):
        return {f"{prefix}.t": state}
    return {f"{prefix}.{i}": s for i, s in enumerate(state)}


def unpack_state(tensors: dict[str, torch.Tensor], prefix: str, device: torch.device | str = "cpu"):
    """Inverse of pack_state (None when nothing was saved under `prefix`)."""
    if f"{prefix}.t" in tensors:
        return tensors[f"{prefix}.t"].to(device)
    items = sorted((int(k.rsplit(".", 1)[1]), v) for k, v in tensors.items() if k.startswith(prefix + "."))
    return tuple(v.to(device) for _, v in items) if items else None
