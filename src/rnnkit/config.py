"""Typed run configuration: frozen dataclasses per component, a YAML recipe, dotted overrides.

A run is configured by one `Config`:

    task: charlm            # the registered task (rnnkit.tasks)
    data: {...}             # the task's own DataConfig
    model: {...}            # the task's own ModelConfig
    optim: {...}            # OptimConfig
    schedule: {...}         # ScheduleConfig
    trainer: {...}          # TrainerConfig
    run: {...}              # RunSettings (dir, seed, device)

`load_config(recipe, overrides)` reads the YAML recipe, applies `key=value`
overrides (`model.hidden_size=512`), and builds the dataclasses. Anything wrong (an
unknown key, a value of the wrong type or out of range) raises `ConfigError` before
any work starts; the message names the key, the value and what was expected, and
suggests the nearest valid key for a typo.

Each section is a frozen dataclass deriving from `Section`. Fields declare their
checks with `option(default, ge=..., gt=..., le=..., lt=..., help=...)`; the allowed
types are bool, int, float, str, `Literal[...]`, `X | None`, `tuple[...]`, `list[X]`
and nested sections.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import yaml

FORMAT_VERSION = 1
"""Version of the run-directory layout and config schema; bumped on incompatible change."""

SECTIONS = ("data", "model", "optim", "schedule", "trainer", "run")
_TOP_LEVEL = ("task",) + SECTIONS + ("format_version",)


class ConfigError(ValueError):
    """A configuration problem, found before any work starts.

    Attributes: `key` (dotted, e.g. "trainer.bptt"), `value`, `expected` (words).
    """

    def __init__(self, key: str, value: Any = None, expected: str = "", *, message: str | None = None):
        self.key, self.value, self.expected = key, value, expected
        if message is None:
            message = f"{key} = {value!r}: expected {expected}"
        super().__init__(f"config error: {message}")


# ----------------------------------------------------------------------------- fields


def option(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
           le: float | None = None, lt: float | None = None, help: str = "",
           default_factory: Callable[[], Any] | Any = dataclasses.MISSING) -> Any:
    """A dataclass field with range checks and a help line (shown by `rnnkit train --keys`)."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "help": help}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Section:
    """Base of every config section: checks types and ranges when constructed.

    Subclasses are `@dataclass(frozen=True)` and may add cross-field checks in
    `check()`, raising `ConfigError` with the field name as key (the loader adds
    the section prefix).
    """

    def __post_init__(self):
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            coerced = _coerce(value, hints[f.name], f.name)
            if coerced is not value:
                object.__setattr__(self, f.name, coerced)
            _check_range(f, coerced, f.name)
        self.check()

    def check(self) -> None:
        """Cross-field checks; override in a subclass."""


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_range(f: dataclasses.Field, value: Any, key: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    m = f.metadata
    bounds = [("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
              ("le", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<")]
    words = [f"{sym} {m[name]}" for name, _, sym in bounds if m.get(name) is not None]
    for name, ok, _ in bounds:
        bound = m.get(name)
        if bound is not None and not ok(value, bound):
            kind = "an integer" if isinstance(value, int) else "a number"
            raise ConfigError(key, value, f"{kind} {' and '.join(words)}")


def _describe(tp: Any) -> str:
    """Human words for a type annotation, used in error messages."""
    origin = typing.get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_describe(a) for a in args) + " or null"
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list, each {_describe(args[0])}"
        return f"a list of {len(args)} items ({', '.join(_describe(a) for a in args)})"
    if origin is list:
        return f"a list, each {_describe(typing.get_args(tp)[0])}"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return f"a mapping of {tp.__name__} keys"
    return str(tp)


class _Raw(str):
    """A command-line override's text, parsed by the type of the field it lands in."""


_NULL_WORDS = ("null", "~", "none", "None", "")


def _parse_raw(text: _Raw, tp: Any) -> Any:
    """Parse an override's text by the field's type: strings stay text, the rest is YAML."""
    origin = typing.get_origin(tp)
    if tp is str or (origin is Literal and text in typing.get_args(tp)):
        return str(text)
    if origin in (typing.Union, types.UnionType) and str in typing.get_args(tp):
        return None if text in _NULL_WORDS else str(text)
    try:
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        return str(text)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return `value` converted to type `tp`, or raise ConfigError naming `key`."""
    if isinstance(value, _Raw):
        value = _parse_raw(value, tp)
    origin = typing.get_origin(tp)
    bad = ConfigError(key, value, _describe(tp))
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise bad
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():  # 1e6 in YAML is a float
            return int(value)
        raise bad
    if tp is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices and type(value) in {type(c) for c in choices}:
            return value
        near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(key, value, _describe(tp) + hint)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise bad
        args = typing.get_args(tp)
        if origin is list:
            return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise bad
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return build_section(tp, value, key)
        raise bad
    raise TypeError(f"config field {key}: unsupported annotation {tp!r}")


def section_keys(cls: type, prefix: str = "") -> list[str]:
    """All dotted keys of a section class (nested sections expanded)."""
    keys = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            keys += section_keys(tp, name + ".")
        else:
            keys.append(name)
    return keys


def _unknown_key(key: str, valid: list[str]) -> ConfigError:
    """An 'unknown key' error that suggests the nearest valid key (difflib)."""
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    head, _, leaf = key.rpartition(".")
    if not near:  # a typo in the last part: compare leaf names within the same section
        leaves = {k.rpartition(".")[2]: k for k in valid if k.rpartition(".")[0] == head}
        near = [leaves[n] for n in difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.6)]
    if not near:  # the right name in the wrong place (seed=1 for run.seed=1)
        leaves = {}
        for k in valid:
            leaves.setdefault(k.rpartition(".")[2], k)
        near = [leaves[n] for n in difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.8)]
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return ConfigError(key, message=f"unknown key {key!r}{hint}")


def build_section(cls: type, data: dict | None, prefix: str, valid: list[str] | None = None) -> Any:
    """Build section dataclass `cls` from a mapping, checking keys, types and ranges.

    `prefix` is the section's dotted name ("trainer"), used in error messages;
    `valid` the keys to suggest from for a typo (default: this section's).
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(prefix, data, f"a mapping of {cls.__name__} keys")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in names:
            raise _unknown_key(key, valid or [f"{prefix}.{k}" if prefix else k for k in section_keys(cls)])
        kwargs[name] = _coerce(value, hints[name], key)
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        key = f"{prefix}.{missing[0]}" if prefix else missing[0]
        raise ConfigError(key, message=f"{key} is required ({_describe(hints[missing[0]])})")
    try:
        return cls(**kwargs)
    except ConfigError as err:
        if prefix and not err.key.startswith(prefix + "."):
            raise _prefixed(err, prefix) from None
        raise


def _prefixed(err: ConfigError, prefix: str) -> ConfigError:
    key = f"{prefix}.{err.key}"
    message = str(err).removeprefix("config error: ")
    if message.startswith(err.key):
        message = key + message[len(err.key):]
    else:
        message = message.replace(repr(err.key), repr(key)).replace(f"{err.key} ", f"{key} ", 1)
    return ConfigError(key, err.value, err.expected, message=message)


# ----------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class EmptyConfig(Section):
    """A section with no options (the default data/model config of a task)."""


@dataclass(frozen=True)
class OptimConfig(Section):
    """The optimiser (torch.optim): SGD (momentum, Nesterov), Adam, AdamW, RMSProp, AdaDelta, Adagrad."""

    name: Literal["sgd", "adam", "adamw", "rmsprop", "adadelta", "adagrad"] = option(
        "adam", help="optimiser")
    lr: float = option(2e-3, gt=0, help="base learning rate (schedules scale it)")
    momentum: float = option(0.0, ge=0, lt=1, help="sgd and rmsprop momentum")
    nesterov: bool = option(False, help="sgd: Nesterov momentum (needs momentum > 0)")
    betas: tuple[float, float] = option((0.9, 0.999), help="adam/adamw moment decay rates")
    eps: float = option(1e-8, gt=0, help="denominator epsilon (adam, adamw, rmsprop, adadelta, adagrad)")
    weight_decay: float = option(0.0, ge=0, help="L2 penalty (adamw: decoupled decay)")
    alpha: float = option(0.99, gt=0, lt=1, help="rmsprop: squared-gradient decay (char-rnn: 0.95)")
    rho: float = option(0.9, gt=0, lt=1, help="adadelta: squared-gradient decay")

    def check(self):
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ConfigError("nesterov", True, "nesterov only with name: sgd and momentum > 0")
        for i, beta in enumerate(self.betas):
            if not 0 <= beta < 1:
                raise ConfigError(f"betas[{i}]", beta, "a number >= 0 and < 1")


@dataclass(frozen=True)
class ScheduleConfig(Section):
    """Learning-rate schedule: a base shape times an optional linear warm-up.

    constant: lr. step: char-rnn style, lr·gamma^k after epoch `decay_after`, one
    more factor every `decay_every` epochs. plateau: lr·gamma each time the
    validation metric (trainer.metric) has not improved for `patience`
    evaluations. cosine: from lr down to min_lr over `total_steps` (default
    trainer.max_steps).
    """

    name: Literal["constant", "step", "plateau", "cosine"] = option("constant", help="schedule shape")
    warmup_steps: int = option(0, ge=0, help="linear warm-up from lr/warmup_steps to lr over this many steps")
    decay_after: int = option(1, ge=1, help="step: first decay at the end of this epoch")
    decay_every: int = option(1, ge=1, help="step: epochs between decays")
    gamma: float = option(0.5, gt=0, le=1, help="step and plateau: multiplicative decay")
    patience: int = option(1, ge=0, help="plateau: evaluations without improvement before a decay")
    min_lr: float = option(0.0, ge=0, help="plateau and cosine: floor of the learning rate")
    total_steps: int = option(0, ge=0, help="cosine: length of the decay (0: trainer.max_steps)")


@dataclass(frozen=True)
class TrainerConfig(Section):
    """The training loop: length, truncated BPTT, clipping, evaluation, stopping, precision."""

    max_epochs: int = option(1, ge=0, help="epochs to train (0: no limit, use max_steps)")
    max_steps: int = option(0, ge=0, help="optimiser steps to train (0: no limit, use max_epochs)")
    bptt: int = option(0, ge=0, help="truncated BPTT chunk length for streamed tasks (0: whole sequences)")
    clip_norm: float = option(0.0, ge=0, help="clip the global gradient norm to this (0: off)")
    clip_value: float = option(0.0, ge=0, help="clamp each gradient element to ±this before norm clipping (0: off)")
    eval_every: int = option(0, ge=0, help="evaluate every this many steps (0: at epoch end only)")
    eval_batches: int = option(0, ge=0, help="validation batches per evaluation (0: all)")
    metric: str = option("loss", help="validation metric for best checkpoint, early stopping, plateau")
    mode: Literal["min", "max"] = option("min", help="whether a lower or higher metric is better")
    patience: int = option(0, ge=0, help="early stop after this many evaluations without improvement (0: off)")
    min_delta: float = option(0.0, ge=0, help="smallest change that counts as an improvement")
    checkpoint_every: int = option(0, ge=0, help="save the last checkpoint every this many steps (0: at evaluations)")
    log_every: int = option(10, ge=1, help="steps between progress lines when not on a terminal")
    precision: Literal["fp32", "bf16", "auto"] = option(
        "fp32", help="bf16: autocast where the device supports it; auto: bf16 if supported")
    on_nonfinite: Literal["stop", "skip"] = option(
        "stop", help="a NaN/Inf loss or gradient stops the run, or skips that batch")
    max_skips: int = option(10, ge=0, help="skip mode: stop after this many consecutive bad batches")
    ema_decay: float = option(0.0, ge=0, lt=1, help="keep an exponential moving average of the weights with this "
                                                    "decay (e.g. 0.99), evaluated and saved in place of the "
                                                    "weights (0: off)")
    ema_start: int = option(0, ge=0, help="step at which the average starts (before it, it follows the weights)")

    def check(self):
        if self.max_epochs == 0 and self.max_steps == 0:
            raise ConfigError("max_steps", 0, "max_steps > 0 or max_epochs > 0 (one must bound the run)")


@dataclass(frozen=True)
class RunSettings(Section):
    """Where and how the run happens."""

    dir: str = option("", help="run directory (default: runs/<task>)")
    seed: int = option(0, ge=0, help="seed of every random number generator")
    device: str = option("auto", help="auto (cuda if present, else cpu), cpu, cuda, cuda:N, mps")
    deterministic: bool = option(True, help="on CUDA, ask torch for deterministic kernels (CPU runs are repeatable as they are)")
    threads: int = option(0, ge=0, help="torch CPU threads (0: torch's default)")
    tensorboard: bool = option(True, help="write TensorBoard events when tensorboard is installed")
    overwrite: bool = option(False, help="start afresh in a run dir that already holds a run")

    def check(self):
        dev = self.device
        ok = dev in ("auto", "cpu", "cuda", "mps") or (
            dev.startswith("cuda:") and dev[5:].isdigit())
        if not ok:
            raise ConfigError("device", dev, "auto, cpu, cuda, cuda:N or mps")


@dataclass(frozen=True)
class Config:
    """A whole run: the task name and its sections."""

    task: str
    data: Any
    model: Any
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    run: RunSettings = field(default_factory=RunSettings)

    def __post_init__(self):
        if self.schedule.name == "cosine" and not (self.schedule.total_steps or self.trainer.max_steps):
            raise ConfigError("schedule.total_steps", 0,
                              "schedule.total_steps > 0 or trainer.max_steps > 0 for the cosine schedule")
        if self.schedule.name == "plateau" and self.trainer.eval_every == 0 and self.trainer.max_epochs == 0:
            raise ConfigError("trainer.eval_every", 0,
                              "trainer.eval_every > 0 for the plateau schedule (it watches evaluations)")

    @property
    def run_dir(self) -> Path:
        return Path(self.run.dir or f"runs/{self.task}")

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------- loading


def parse_override(text: str) -> tuple[str, _Raw]:
    """'model.hidden_size=512' -> ('model.hidden_size', '512'); the value is typed later."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(text, message=f"override {text!r}: expected key=value, e.g. model.hidden_size=512")
    return key, _Raw(value.strip())


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of the nested mapping `data` with dotted `key=value` overrides set."""
    data = _deepcopy(data)
    for text in overrides:
        key, value = parse_override(text)
        parts = key.split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError(key, message=f"unknown key {key!r}: {where} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def _deepcopy(obj):
    if isinstance(obj, dict):
        return {k: _deepcopy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deepcopy(v) for v in obj]
    return obj


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(str(path), message=f"cannot read recipe {path}: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(str(path), message=f"{path} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), message=f"{path}: expected a mapping at the top level")
    return data


def _default_resolver(name: str) -> type:
    from .tasks.registry import get_task  # the one upward import: tasks own their sections

    return get_task(name)


def build_config(data: dict, resolve_task: Callable[[str], type] | None = None) -> Config:
    """Build a `Config` from a nested mapping (a recipe with overrides applied).

    `resolve_task(name)` returns the task class; its `DataConfig` and `ModelConfig`
    type the `data:` and `model:` sections. Raises ConfigError on any problem.
    """
    resolve_task = resolve_task or _default_resolver
    data = dict(data)
    version = data.pop("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise ConfigError("format_version", version,
                          f"format version {FORMAT_VERSION} (this rnnkit); the config was written by another version")
    task_name = data.get("task")
    if task_name is None:
        raise ConfigError("task", message="task is required (e.g. task: charlm)")
    task_name = str(task_name)
    try:
        task_cls = resolve_task(task_name)
    except LookupError as err:  # the registry's UnknownTaskError
        raise ConfigError("task", task_name, message=f"task = {task_name!r}: {err.args[0]}") from None
    valid = all_keys(task_cls)
    for key, value in data.items():
        if key not in _TOP_LEVEL:
            raise _unknown_key(_first_leaf(str(key), value), valid)
    classes = {"data": getattr(task_cls, "DataConfig", EmptyConfig),
               "model": getattr(task_cls, "ModelConfig", EmptyConfig),
               "optim": OptimConfig, "schedule": ScheduleConfig,
               "trainer": TrainerConfig, "run": RunSettings}
    sections = {}
    for name, cls in classes.items():
        sections[name] = build_section(cls, data.get(name), name, valid)
    return Config(task=task_name, **sections)


def _first_leaf(key: str, value: Any) -> str:
    while isinstance(value, dict) and value:
        sub, value = next(iter(value.items()))
        key = f"{key}.{sub}"
    return key


def all_keys(task_cls: type) -> list[str]:
    """Every dotted key a recipe for this task may set."""
    keys = ["task"]
    keys += section_keys(getattr(task_cls, "DataConfig", EmptyConfig), "data.")
    keys += section_keys(getattr(task_cls, "ModelConfig", EmptyConfig), "model.")
    for name, cls in (("optim", OptimConfig), ("schedule", ScheduleConfig),
                      ("trainer", TrainerConfig), ("run", RunSettings)):
        keys += section_keys(cls, name + ".")
    return keys


def load_config(recipe: str | Path | dict | None, overrides: list[str] = (),
                resolve_task: Callable[[str], type] | None = None) -> Config:
    """Recipe (a YAML path or a mapping) first, then `key=value` overrides; returns a Config."""
    if recipe is None:
        data = {}
    elif isinstance(recipe, dict):
        data = recipe
    else:
        data = read_yaml(recipe)
    return build_config(apply_overrides(data, list(overrides)), resolve_task)


# ----------------------------------------------------------------------------- writing


def to_dict(obj: Any) -> Any:
    """A config (or section) as plain YAML/JSON-friendly data: dicts, lists, scalars."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def config_to_dict(config: Config) -> dict:
    """The resolved config with its format version, as written to config.yaml."""
    return {"format_version": FORMAT_VERSION, **to_dict(config)}


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=None)


def diff_configs(old: dict, new: dict, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every leaf that differs between two config mappings.

    A key missing on one side has the value "<absent>".
    """
    out = []
    for key in list(old) + [k for k in new if k not in old]:
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff_configs(a, b, name + ".")
        elif a != b:
            out.append((name, a, b))
    return out


def describe_keys(task_cls: type) -> str:
    """A table of every key with its type, default and help, for `rnnkit train --keys`."""
    rows = [("task", "a registered task name", "", "")]
    classes = [("data", getattr(task_cls, "DataConfig", EmptyConfig)),
               ("model", getattr(task_cls, "ModelConfig", EmptyConfig)),
               ("optim", OptimConfig), ("schedule", ScheduleConfig),
               ("trainer", TrainerConfig), ("run", RunSettings)]
    for prefix, cls in classes:
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else (
                "(required)" if f.default_factory is dataclasses.MISSING else f.default_factory())
            bounds = [f"{sym} {f.metadata[k]}" for k, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
                      if f.metadata.get(k) is not None]
            kind = _describe(hints[f.name]) + (" " + " and ".join(bounds) if bounds else "")
            rows.append((f"{prefix}.{f.name}", kind, repr(to_dict(default)), f.metadata.get("help", "")))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{width}}  {d:<10}  {h}  [{t}]" if h else f"{k:<{width}}  {d:<10}  [{t}]"
                     for k, t, d, h in rows)
