"""`classify`: many-to-one sequence classification (and regression), on real or synthetic data.

    rnnkit train configs/classify-japanese-vowels.yaml
    rnnkit eval runs/japanese-vowels --split test          # accuracy, macro P/R/F1, confusion matrix (+ PNG)
    rnnkit sample runs/japanese-vowels --input new.npz     # predictions for new data (see `predict`)

Data (`data.source`): `aeon` (a classification set bundled in aeon, `data.name`), `digits`
(scikit-learn's digits row by row), `file` (a user's .npz/.csv, layout in
rnnkit.data.sequences), or a synthetic task (`parity` final bit, `adding` (regression),
`larger`, `order`; rnnkit.data.synthetic). The validation split is `data.valid_fraction`
of the training split (stratified), or fold `data.fold` of `data.folds`; with neither
(valid_fraction 0) training runs a fixed number of epochs and keeps the last
checkpoint, the right choice for sets of a few dozen series. Synthetic tasks generate
their own validation and test sets, and with `data.fresh` a new training set every
epoch. Features are standardised with statistics of the training split only, saved as
scaler.json with the class names (labels.json) in the run directory.

Model (`model.architecture`): `rnn`, `rnnkit.models.SequenceClassifier` (any cell,
stacked, bidirectional, pooling last/mean/max/attention), or `window_mlp`, the
feed-forward baseline `rnnkit.models.WindowMLP`.

Loss: cross-entropy (classes) or mean squared error (`adding`). Validation reports
accuracy, macro precision/recall/F1 and mean IoU from a confusion matrix summed over
the whole split (exact, also under data parallelism), not averaged per batch.

The `tag` task (rnnkit.tasks.tag) shares all of this with a prediction at every step.
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.nn import functional as F

from ..cells import cell_names
from ..config import ConfigError, Section, option
from ..data.sequences import (IGNORE, FileLayout, Scaler, SequenceBatches, SequenceDataError, SequenceSet,
                              kfold_split, load_aeon, load_digits_rows, load_file, stratified_split)
from ..data.synthetic import SYNTHETIC, make_synthetic
from ..metrics.classification import (classification_metrics, confusion_matrix, format_confusion,
                                      save_confusion_png)
from ..models.classifier import (SequenceClassifier, SequenceEnsemble, SequenceTagger, WindowMLP, chrono_init,
                                 length_mask)
from ..train import distributed
from .base import Batch, LossOutput, Task, TaskCommandError, epoch_generator, cell_options, check_cell
from .registry import register_task

LABELS_FILE = "labels.json"
SCALER_FILE = "scaler.json"
SOURCES = ("aeon", "digits", "file") + SYNTHETIC


@dataclass(frozen=True)
class SequenceData(Section):
    """Where the sequences come from, how they are split, scaled and batched."""

    source: Literal["aeon", "digits", "file", "parity", "adding", "larger", "copy", "order"] = option(
        "aeon", help="aeon: data.name from aeon's bundled sets; digits: sklearn digits by rows; file: "
                     "data.path; parity, adding, larger, copy, order: generated")
    name: str = option("JapaneseVowels", help="source=aeon: the data set (JapaneseVowels, BasicMotions, GunPoint, ...)")
    path: str = option("", help="source=file: the training file (.npz or .csv); source=aeon: a directory "
                                "of NAME/NAME_TRAIN.ts, NAME_TEST.ts files (default: aeon's bundled sets)")
    test_path: str = option("", help="source=file: a separate test file ('' : test_fraction of data.path)")
    id_column: str = option("id", help="CSV: the column naming the sequence of each row")
    label_column: str = option("label", help="CSV: the label column")
    step_column: str = option("", help="CSV: a column to order each sequence's rows by ('' : file order)")
    valid_fraction: float = option(0.15, ge=0, lt=1,
                                   help="held out of the training split for validation, per class (0: none; "
                                        "train a fixed number of epochs)")
    folds: int = option(0, ge=0, help="k-fold: validate on fold data.fold of this many folds of the training "
                                      "split (0: use valid_fraction)")
    fold: int = option(0, ge=0, help="k-fold: which fold is the validation split (0..folds-1)")
    fold_order: Literal["random", "contiguous"] = option(
        "random", help="k-fold: each class's sequences dealt to the folds at random (seeded by data_seed), or cut "
                       "in file order into consecutive blocks (data recorded in order: validate on another stretch "
                       "of time)")
    test_fraction: float = option(0.2, gt=0, lt=1,
                                  help="digits, and file without test_path: the share held out as test split")
    data_seed: int = option(0, ge=0, help="seed of the splits and of generated data (independent of run.seed)")
    standardize: bool = option(True, help="scale each feature to mean 0, std 1 on the training split")
    input_noise: float = option(0.0, ge=0, help="training only: Gaussian noise of this standard deviation "
                                                "added to the (scaled) input features at every real step")
    offset_noise: float = option(0.0, ge=0, help="training only: one Gaussian vector of this standard "
                                                 "deviation per sequence, added to the (scaled) features at "
                                                 "all its real steps (a constant shift, as a fixed linear "
                                                 "channel gives cepstral features)")
    scale_noise: float = option(0.0, ge=0, help="training only: each feature of each sequence is multiplied "
                                                "by one Gaussian factor of mean 1 and this standard deviation, "
                                                "the same at all its real steps (magnitude scaling)")
    feature_mask: float = option(0.0, ge=0, lt=1, help="training only: each feature of each sequence is set to "
                                                       "0 (its training mean, once standardised) at all its "
                                                       "real steps with this probability (channel masking)")
    test_copies: int = option(0, ge=0, help="evaluation and predict: the answer is the mean probability over "
                                            "this many copies of each sequence with the training input_noise "
                                            "and offset_noise drawn afresh (test-time augmentation; seeded, so "
                                            "repeatable; 0: the sequence alone)")
    freq_warp: float = option(0.0, ge=0, lt=1, help="training only, for cepstral features c_1..c_D (e.g. "
                                                    "JapaneseVowels' LPC cepstra): each sequence's spectrum is "
                                                    "warped by an all-pass frequency warp of α uniform in "
                                                    "± freq_warp, a linear map of its cepstrum (vocal tract "
                                                    "length perturbation; 0: off; classify)")
    time_warp: float = option(0.0, ge=0, lt=1, help="training only: each sequence is resampled (linear "
                                                    "interpolation) to its length times a factor uniform in "
                                                    "1 ± time_warp (0: off; classify)")
    crop: float = option(1.0, gt=0, le=1, help="training only: each sequence is cut to a random contiguous part "
                                               "of at least this fraction of its steps (1: off; classify)")
    batch_size: int = option(32, ge=1, help="sequences per training batch")
    eval_batch_size: int = option(256, ge=1, help="sequences per evaluation batch")
    length: int = option(50, ge=1, help="synthetic: steps per sequence T (parity, adding, larger, order)")
    min_length: int = option(0, ge=0, help="synthetic: lengths uniform in min_length..length (0: all = length)")
    delay: int = option(10, ge=0, help="copy: blank steps between the symbols and the recall")
    symbols: int = option(5, ge=1, help="copy: symbols to remember")
    alphabet: int = option(8, ge=2, help="copy: symbol alphabet; order: vocabulary size")
    train_size: int = option(10000, ge=1, help="synthetic: training sequences (per epoch with fresh)")
    valid_size: int = option(500, ge=1, help="synthetic: validation sequences")
    test_size: int = option(1000, ge=1, help="synthetic: test sequences")
    fresh: bool = option(False, help="synthetic: new training sequences every epoch (seeded by data_seed, epoch)")

    def check(self):
        if self.folds == 1:
            raise ConfigError("folds", 1, "0 (no k-fold) or at least 2")
        if self.folds and self.fold >= self.folds:
            raise ConfigError("fold", self.fold, f"0..{self.folds - 1} (data.folds is {self.folds})")
        if self.source == "file" and not self.path:
            raise ConfigError("path", self.path, "a .npz or .csv file when source is 'file'")
        if self.min_length > self.length:
            raise ConfigError("min_length", self.min_length, f"at most data.length ({self.length})")
        if self.test_copies and not (self.input_noise or self.offset_noise):
            raise ConfigError("test_copies", self.test_copies, "0 unless data.input_noise or data.offset_noise "
                                                               "is set (the copies carry the training noise)")

    @property
    def synthetic(self) -> bool:
        return self.source in SYNTHETIC


@dataclass(frozen=True)
class SequenceModelConfig(Section):
    """The recurrent classifier/tagger, or the MLP-on-windows baseline."""

    architecture: Literal["rnn", "window_mlp"] = option("rnn", help="rnn: encoder + pooling; window_mlp: the "
                                                                    "feed-forward baseline on windows")
    cell: str = option("lstm", help="rnnkit cell: " + ", ".join(cell_names()))
    variant: str = option("", help="cell variant (lstm: peephole, cifg, ...; gru: original); '' the default")
    nonlinearity: str = option("", help="rnn cell: tanh or relu ('' the default)")
    forget_bias: float | None = option(None, help="lstm: initial forget-gate bias (null: the cell's default, 1)")
    chrono: int = option(0, ge=0, help="lstm: chrono initialisation of the gate biases for dependencies up to "
                                       "this many steps (Tallec & Ollivier 2018; 0: off)")
    hidden_size: int = option(64, ge=1, help="H, units per recurrent layer (window_mlp: per hidden layer)")
    num_layers: int = option(1, ge=1, help="stacked recurrent layers (window_mlp: hidden layers)")
    bidirectional: bool = option(False, help="a backward direction too, outputs concatenated")
    pooling: Literal["last", "mean", "max", "meanmax", "meanstd", "attention"] = option(
        "last", help="classify: how the step outputs become one vector (window_mlp: mean or max)")
    projection_size: int = option(0, ge=0, help="a linear input projection D -> this before the recurrence (0: none)")
    conv_width: int = option(0, ge=0, help="k (odd): a convolution over time of width k with ReLU before the "
                                           "recurrence (0: none)")
    conv_channels: int = option(0, ge=0, help="the convolution's output channels (0: as many as its inputs)")
    deltas: bool = option(False, help="each step also reads its difference from the step before (speech's delta "
                                      "features; 0 at the first step): D -> 2D inputs")
    fcn_channels: list[int] = option(default_factory=list, help="classify: channels of the blocks of a fully "
                                     "convolutional branch beside the recurrence (LSTM-FCN), e.g. [128, 256, 128]; "
                                     "[] none")
    fcn_widths: list[int] = option(default_factory=lambda: [8, 5, 3], help="the branch's kernel widths, one per "
                                                                           "block")
    dropout: float = option(0.0, ge=0, lt=1, help="between layers and before the output layer")
    window: int = option(5, ge=1, help="window_mlp: steps per window")
    window_mode: Literal["ordered", "bag"] = option("ordered", help="window_mlp: flatten the window in order, "
                                                                    "or average its steps (order-free)")
    ensemble: int = option(1, ge=1, help="E independently initialised members, each trained on its own loss; "
                                         "the answer is their mean probability (a deep ensemble)")
    teacher: str = option("", help="knowledge distillation: a trained classify run on the same classes (e.g. an "
                                   "ensemble; its best checkpoint, else last, or a checkpoint directory such as "
                                   "RUN/last) whose softened answers join the training loss ('' : none)")
    distill_weight: float = option(0.5, ge=0, le=1, help="distillation: the share of the loss that matches the "
                                                          "teacher (the rest is cross-entropy with the labels)")
    distill_temperature: float = option(2.0, gt=0, help="distillation: T, both answers are softened as softmax(z/T)")
    label_smoothing: float = option(0.0, ge=0, lt=1, help="classes: training targets (1 - s)·one-hot + s/K "
                                                            "(evaluation reports the plain cross-entropy)")

    def check(self):
        check_cell(self.cell)
        if self.chrono and (self.cell != "lstm" or self.architecture != "rnn"):
            raise ConfigError("chrono", self.chrono, "0 unless cell is lstm (chrono initialises LSTM gate biases)")
        if self.architecture == "window_mlp" and self.pooling not in ("mean", "max"):
            raise ConfigError("pooling", self.pooling, "mean or max for architecture window_mlp")
        if self.conv_width % 2 == 0 and self.conv_width:
            raise ConfigError("conv_width", self.conv_width, "0 (off) or odd (a window centred on each step)")
        if self.fcn_channels and len(self.fcn_widths) != len(self.fcn_channels):
            raise ConfigError("fcn_widths", self.fcn_widths, f"one width per block of fcn_channels "
                                                             f"({len(self.fcn_channels)} blocks)")
        if any(v < 1 for v in list(self.fcn_channels) + list(self.fcn_widths)):
            raise ConfigError("fcn_channels", self.fcn_channels, "channels and widths >= 1")
        if self.deltas and self.architecture != "rnn":
            raise ConfigError("deltas", self.deltas, "false for architecture window_mlp")
        if self.fcn_channels and self.architecture != "rnn":
            raise ConfigError("fcn_channels", self.fcn_channels, "[] for architecture window_mlp")
        if self.teacher and self.ensemble > 1:
            raise ConfigError("teacher", self.teacher, "'' with model.ensemble > 1 (distil into a single model)")


@register_task("classify")
class Classify(Task):
    """Many-to-one: one class (or one value) per sequence; see the module docstring."""

    DataConfig = SequenceData
    ModelConfig = SequenceModelConfig
    unit = "seq"
    per_step = False  # the tag task sets True

    def __init__(self, config):
        super().__init__(config)
        self.meta: dict | None = None  # kind, classes, input_size, source: labels.json
        self.scaler: Scaler | None = None
        self.splits: dict[str, SequenceSet] = {}
        self._model = None
        self._confusion: np.ndarray | None = None  # summed over an evaluation (eval mode only)
        self._sequences = np.zeros(2)  # tag: (sequences, sequences with every step right)
        self.last_confusion: np.ndarray | None = None
        if self.per_step and self.data_config.crop < 1:
            raise ConfigError("data.crop", self.data_config.crop, "1 for a tagger (every step has its own target)")
        if self.per_step and self.data_config.time_warp:
            raise ConfigError("data.time_warp", self.data_config.time_warp,
                              "0 for a tagger (every step has its own target)")
        if self.per_step and self.model_config.teacher:
            raise ConfigError("model.teacher", self.model_config.teacher, "'' for a tagger (classification only)")
        if self.per_step and self.model_config.fcn_channels:
            raise ConfigError("model.fcn_channels", self.model_config.fcn_channels, "[] for a tagger (the branch "
                                                                                    "answers once per sequence)")
        self._teacher = None  # (model, input rescaling) once training starts

    # -- data ------------------------------------------------------------------------------
    def _kinds(self) -> tuple[str, ...]:
        return ("tag",) if self.per_step else ("class", "value")

    def _raw_splits(self) -> dict[str, SequenceSet]:
        """train (before the validation cut), test and, for synthetic data, valid."""
        d = self.data_config
        classes = self.meta["classes"] if self.meta else None
        kind = "tag" if self.per_step else "class"
        if d.synthetic:
            return {split: self._generate(split, k) for k, split in enumerate(("train", "valid", "test"))}
        if d.source == "aeon":
            train = load_aeon(d.name, "train", d.path or None, classes)
            return {"train": train, "test": load_aeon(d.name, "test", d.path or None, train.classes)}
        if d.source == "digits":
            everything = load_digits_rows()
        else:
            layout = FileLayout(d.id_column, d.label_column, d.step_column)
            everything = load_file(d.path, kind, classes, layout)
            if d.test_path:
                test = load_file(d.test_path, kind, everything.classes, layout)
                return {"train": everything, "test": test}
        keep, held = stratified_split(self._strata(everything), len(everything), d.test_fraction, d.data_seed)
        return {"train": everything.subset(keep), "test": everything.subset(held)}

    def _generate(self, split: str, stream: int, epoch: int | None = None) -> SequenceSet:
        d = self.data_config
        count = {"train": d.train_size, "valid": d.valid_size, "test": d.test_size}[split]
        seed = [d.data_seed, stream] if epoch is None else [d.data_seed, stream, epoch]
        return make_synthetic(d.source, np.random.default_rng(seed), count, length=d.length,
                              min_length=d.min_length, per_step=self.per_step, delay=d.delay,
                              symbols=d.symbols, alphabet=d.alphabet)

    @staticmethod
    def _strata(data: SequenceSet) -> np.ndarray | None:
        return np.asarray(data.targets) if data.kind == "class" else None

    def prepare_data(self) -> None:
        d = self.data_config
        where = f"data.source={d.source}" + (f", data.name={d.name}" if d.source == "aeon" else "")
        try:
            splits = self._raw_splits()
            if splits["train"].kind not in self._kinds():
                other = "tag" if splits["train"].kind == "tag" else "classify"
                raise SequenceDataError(f"this source gives {splits['train'].kind!r} targets: use task: {other}")
            if "valid" not in splits:
                train = splits["train"]
                if d.folds:
                    keep, held = kfold_split(self._strata(train), len(train), d.folds, d.fold, d.data_seed,
                                             contiguous=d.fold_order == "contiguous")
                elif d.valid_fraction > 0:
                    keep, held = stratified_split(self._strata(train), len(train), d.valid_fraction, d.data_seed + 1)
                else:
                    keep, held = np.arange(len(train)), None
                if held is not None:
                    splits["valid"] = train.subset(held)
                splits["train"] = train.subset(keep)
            for name, data in splits.items():
                data.check(f"{name} split ({where})")
        except SequenceDataError as err:
            key = "data.path" if d.source == "file" else ("data.name" if d.source == "aeon" else "data.source")
            raise ConfigError(key, message=f"{where}: {err}") from None
        train = splits["train"]
        if self.meta is None:  # a fresh run; a resumed or evaluated one loaded these
            self.meta = {"kind": train.kind, "classes": list(train.classes), "input_size": train.input_size,
                         "source": d.source, "name": d.name if d.source == "aeon" else ""}
            self.scaler = Scaler.fit(train) if d.standardize else Scaler.identity(train.input_size)
        elif train.input_size != self.meta["input_size"]:
            raise ConfigError("data.source", message=f"{where}: {train.input_size} features, the run was trained "
                                                     f"on {self.meta['input_size']}")
        self.splits = {name: self.scaler.apply(data) for name, data in splits.items()}

    def save_assets(self, directory: Path) -> None:
        directory = Path(directory)
        (directory / LABELS_FILE).write_text(json.dumps(self.meta, indent=1))
        self.scaler.save(directory / SCALER_FILE)

    def load_assets(self, directory: Path) -> None:
        directory = Path(directory)
        if not (directory / LABELS_FILE).exists():
            raise TaskCommandError(f"{directory}: no {LABELS_FILE}; this is not a classify/tag run")
        self.meta = json.loads((directory / LABELS_FILE).read_text())
        self.scaler = Scaler.load(directory / SCALER_FILE)

    # -- model -----------------------------------------------------------------------------
    @property
    def num_outputs(self) -> int:
        return 1 if self.meta["kind"] == "value" else len(self.meta["classes"])

    def build_model(self):
        m = self.model_config
        members = [self._build_member() for _ in range(m.ensemble)]
        if m.ensemble == 1:
            model = members[0]
        else:
            model = SequenceEnsemble(members, regression=self.meta["kind"] == "value")
        self._model = model
        return model

    def _build_member(self):
        m, D, K = self.model_config, self.meta["input_size"], self.num_outputs
        if m.architecture == "window_mlp":
            model = WindowMLP(D, K, window=m.window, hidden_size=m.hidden_size, num_layers=m.num_layers,
                              mode=m.window_mode, pooling=m.pooling, dropout=m.dropout, per_step=self.per_step)
        elif self.per_step:
            model = SequenceTagger(D, K, m.cell, m.hidden_size, m.num_layers, m.bidirectional, m.dropout,
                                   m.projection_size, conv_width=m.conv_width, conv_channels=m.conv_channels,
                                   deltas=m.deltas, **cell_options(m))
        else:
            model = SequenceClassifier(D, K, m.cell, m.hidden_size, m.num_layers, m.bidirectional, m.pooling,
                                       m.dropout, m.projection_size, conv_width=m.conv_width,
                                       conv_channels=m.conv_channels, fcn_channels=tuple(m.fcn_channels),
                                       fcn_widths=tuple(m.fcn_widths) if m.fcn_channels else (), deltas=m.deltas,
                                       **cell_options(m))
        if m.chrono and m.architecture == "rnn":
            chrono_init(model.encoder.rnn, m.chrono)
        return model

    # -- batches ---------------------------------------------------------------------------
    def _batches(self, data: SequenceSet, batch_size: int, generator=None, noise: float = 0.0,
                 noise_generator=None, crop: float = 1.0, crop_generator=None, offset: float = 0.0,
                 offset_generator=None, warp: float = 0.0, warp_generator=None, scale: float = 0.0,
                 scale_generator=None, mask: float = 0.0, mask_generator=None, freq_warp: float = 0.0,
                 freq_warp_generator=None):
        return _Batches(SequenceBatches(data, batch_size, generator), noise, noise_generator, crop, crop_generator,
                        offset, offset_generator, warp, warp_generator, scale, scale_generator, mask, mask_generator,
                        freq_warp, freq_warp_generator, self.scaler)

    def train_batches(self, epoch: int):
        if self.model_config.teacher and self._teacher is None:
            self._teacher = self._load_teacher(self.model_config.teacher)
        d = self.data_config
        data = self.splits["train"]
        if d.synthetic and d.fresh and epoch > 0:  # epoch 0 is the set prepare_data made
            data = self.scaler.apply(self._generate("train", 0, epoch))
        seed = self.config.run.seed
        noise, crop, offset, warp, scale = d.input_noise, d.crop, d.offset_noise, d.time_warp, d.scale_noise
        mask = d.feature_mask
        # noise, offsets, scales, crops and warps have their own seeded streams, so the batch
        # order is the same with or without them
        return self._batches(data, d.batch_size, epoch_generator(seed, epoch), noise,
                             epoch_generator(seed + 104729, epoch) if noise else None, crop,
                             epoch_generator(seed + 130363, epoch) if crop < 1 else None, offset,
                             epoch_generator(seed + 155921, epoch) if offset else None, warp,
                             epoch_generator(seed + 181081, epoch) if warp else None, scale,
                             epoch_generator(seed + 206699, epoch) if scale else None, mask,
                             epoch_generator(seed + 232153, epoch) if mask else None, d.freq_warp,
                             epoch_generator(seed + 257987, epoch) if d.freq_warp else None)

    def valid_batches(self):
        if "valid" not in self.splits:
            return ()
        return self._batches(self.splits["valid"], self.data_config.eval_batch_size)

    def eval_batches(self, split: str):
        if split not in ("train", "valid", "test"):
            raise TaskCommandError(f"task {self.name!r} has no split {split!r} (it has: train, valid, test)")
        if split not in self.splits:
            raise TaskCommandError(f"this run has no {split} split: it trained without validation "
                                   "(data.valid_fraction 0, data.folds 0); evaluate with --split test")
        return self._batches(self.splits[split], self.data_config.eval_batch_size)

    # -- loss and metrics ------------------------------------------------------------------
    def _loss(self, out: torch.Tensor, y: torch.Tensor, num_items: int, training: bool = False) -> torch.Tensor:
        """Mean loss per item; label smoothing (training only: evaluation reports the plain cross-entropy)."""
        if self.meta["kind"] == "value":
            return F.mse_loss(out.squeeze(-1), y.float())
        smoothing = self.model_config.label_smoothing if training else 0.0
        if self.per_step:
            loss = F.cross_entropy(out.flatten(0, 1), y.flatten(), ignore_index=IGNORE, reduction="sum",
                                   label_smoothing=smoothing)
            return loss / max(num_items, 1)
        return F.cross_entropy(out, y, label_smoothing=smoothing)

    def _load_teacher(self, run_dir: str):
        """The teacher's model (eval mode, on CPU unless ours moves it) and the affine map from our
        standardised inputs to its own; refuses a teacher of other classes or features."""
        from ..cli import load_run

        try:
            task, model, config, _ = load_run(run_dir, device="cpu")
        except Exception as e:
            raise ConfigError("model.teacher", run_dir, f"a trained classify run ({e})") from e
        if config.task != "classify" or task.meta.get("kind") != "class":
            raise ConfigError("model.teacher", run_dir, f"a classification run (it is a {config.task!r} run of "
                                                        f"{task.meta.get('kind', '?')} targets)")
        if list(task.meta["classes"]) != list(self.meta["classes"]):
            raise ConfigError("model.teacher", run_dir, f"a run on the classes {self.meta['classes']} "
                                                        f"(it has {task.meta['classes']})")
        if task.meta["input_size"] != self.meta["input_size"]:
            raise ConfigError("model.teacher", run_dir, f"a run on {self.meta['input_size']} features "
                                                        f"(it has {task.meta['input_size']})")
        for p in model.parameters():
            p.requires_grad_(False)
        # ours: x' = (x - m) / s; the teacher's: (x - m_t) / s_t = x' · s / s_t + (m - m_t) / s_t
        scale = torch.as_tensor(self.scaler.std / task.scaler.std, dtype=torch.float32)
        shift = torch.as_tensor((self.scaler.mean - task.scaler.mean) / task.scaler.std, dtype=torch.float32)
        return model, scale, shift

    def _distill(self, student: torch.Tensor, batch: Batch) -> torch.Tensor:
        """T² · KL(softmax(teacher/T) ‖ softmax(student/T)), mean over the batch (Hinton et al. 2015)."""
        teacher, scale, shift = self._teacher
        device = student.device
        if next(teacher.parameters()).device != device:
            teacher.to(device)
        x = batch.inputs * scale.to(device) + shift.to(device)  # (N, L, D) in the teacher's units
        with torch.no_grad():
            target, _ = teacher(x, None, batch.lengths)  # (N, K) logits or log-probabilities
        T = self.model_config.distill_temperature
        return F.kl_div((student / T).log_softmax(-1), (target.float() / T).log_softmax(-1), log_target=True,
                        reduction="batchmean") * T * T

    def compute_loss(self, model, batch: Batch, state) -> LossOutput:
        y = batch.targets
        if self.model_config.ensemble > 1 and model.training:  # each member on its own loss
            members, state = model(batch.inputs, None, batch.lengths, members=True)  # (E, N, ..., K)
            members = members.float()
            loss = torch.stack([self._loss(o, y, batch.num_items, True) for o in members]).mean()
            out = (members.mean(0) if self.meta["kind"] == "value" else
                   torch.logsumexp(members.log_softmax(-1), 0))  # the ensemble's answer, up to a constant
        elif not model.training and self.data_config.test_copies:
            out, state = self.answer(model, batch.inputs, batch.lengths), None
            loss = self._loss(out, y, batch.num_items)
        else:
            out, state = model(batch.inputs, None, batch.lengths)  # (N, K) or (N, L, K)
            out = out.float()
            loss = self._loss(out, y, batch.num_items, model.training)
            if self._teacher is not None and model.training:
                w = self.model_config.distill_weight
                loss = (1 - w) * loss + w * self._distill(out, batch)
        if self.meta["kind"] == "value":
            return LossOutput(loss, {}, state)
        pred = out.argmax(-1)
        real = y != IGNORE
        correct = ((pred == y) & real).sum()
        metrics = {"accuracy": correct.float() / max(int(real.sum()), 1)}
        if not model.training:  # evaluation: gather the exact confusion matrix of the split
            K = self.num_outputs
            cm = confusion_matrix(y.cpu().numpy(), pred.cpu().numpy(), K, IGNORE)
            self._confusion = cm if self._confusion is None else self._confusion + cm
            if self.per_step:
                whole = ((pred == y) | ~real).all(dim=1)
                self._sequences += np.array([len(whole), int(whole.sum())])
        return LossOutput(loss, metrics, state)

    def answer(self, model, inputs: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """The model's answer to a batch (N, L, D): its output, or with data.test_copies = C the
        log of the mean probability over C copies carrying the training noise (regression: the
        mean output). The copies' noise comes from a generator seeded afresh for every batch,
        so an evaluation is repeatable."""
        d = self.data_config
        if not d.test_copies:
            return model(inputs, None, lengths)[0].float()
        N, L, D = inputs.shape
        generator = torch.Generator().manual_seed(self.config.run.seed + 231_131)
        real = torch.ones(N, L, 1) if lengths is None else (
            torch.arange(L)[None, :, None] < lengths.cpu()[:, None, None]).float()
        outs = []
        for _ in range(d.test_copies):
            shift = torch.randn(N, L, D, generator=generator) * d.input_noise
            shift = shift + torch.randn(N, 1, D, generator=generator) * d.offset_noise
            outs.append(model(inputs + (shift * real).to(inputs.device, inputs.dtype), None, lengths)[0].float())
        outs = torch.stack(outs)
        if self.meta["kind"] == "value":
            return outs.mean(0)
        return torch.logsumexp(outs.log_softmax(-1), dim=0) - math.log(len(outs))

    def summarize(self, metrics: dict[str, float]) -> dict[str, float]:
        metrics = dict(metrics)
        if self.meta["kind"] == "value":
            metrics["mse"] = metrics["loss"]
        if self._confusion is not None:
            K = self.num_outputs
            packed = torch.tensor(np.concatenate([self._confusion.ravel(), self._sequences]), dtype=torch.float64)
            packed = distributed.all_reduce_sum(packed).numpy()
            cm = packed[: K * K].reshape(K, K).round().astype(np.int64)
            metrics.update(classification_metrics(cm))
            if self.per_step and packed[-2] > 0:
                metrics["sequence_accuracy"] = float(packed[-1] / packed[-2])
            self.last_confusion = cm
        self._confusion, self._sequences = None, np.zeros(2)
        return metrics

    # -- command line ----------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, command: str, parser) -> None:
        if command == "eval":
            parser.add_argument("--png", metavar="PATH", default=None,
                                help="where to draw the confusion matrix (default RUN_DIR/plots/confusion-SPLIT.png)")
            parser.add_argument("--no-png", action="store_true", help="do not draw the confusion matrix")
        elif command in ("sample", "predict"):
            parser.add_argument("--input", required=True, metavar="FILE",
                                help="sequences to classify: .npz or .csv in the training layout (labels optional)")
            parser.add_argument("--output", metavar="CSV", default=None, help="write the predictions here (default stdout)")

    def report(self, metrics: dict[str, float], args) -> None:
        if self.meta["kind"] == "value":
            print(f"mse {metrics['mse']:.6g}")
            return
        for key in ("loss", "accuracy", "macro_precision", "macro_recall", "macro_f1", "mean_iou", "sequence_accuracy"):
            if key in metrics:
                print(f"{key} {metrics[key]:.4f}")
        cm = self.last_confusion
        if cm is None:
            return
        print(format_confusion(cm, self.meta["classes"]))
        if getattr(args, "no_png", False):
            return
        run_dir = Path(args.run_dir)
        run_dir = run_dir.parent if (run_dir / "trainer_state.json").exists() else run_dir
        path = Path(args.png) if getattr(args, "png", None) else run_dir / "plots" / f"confusion-{args.split}.png"
        try:
            save_confusion_png(cm, path, self.meta["classes"], title=f"{run_dir.name}, split {args.split}: "
                               f"accuracy {metrics['accuracy']:.4f}")
            print(f"wrote {path}")
        except ImportError:
            print("(matplotlib is not installed: no PNG; pip install 'rnnkit[plot]')", file=sys.stderr)

    def sample(self, model, args) -> None:
        """`rnnkit sample RUN_DIR --input FILE`: the same as `rnnkit predict`."""
        self.predict(model, args)

    def predict(self, model, args) -> None:
        """Write one CSV row per sequence (tag: per step): id, [step,] prediction, probability.

        The input file uses the training layout; labels may be absent. Its features are
        standardised with the run's scaler.json.
        """
        kind = self.meta["kind"]
        layout = FileLayout(self.data_config.id_column, self.data_config.label_column, self.data_config.step_column)
        try:
            data = load_file(args.input, "tag" if kind == "tag" else "class", self.meta["classes"] or None,
                             layout, require_labels=False)
            if kind == "value":
                data = SequenceSet(data.sequences, np.zeros(len(data), np.float32), [], "value", data.ids)
            data.check(str(args.input))
            data = self.scaler.apply(data)
        except SequenceDataError as err:
            raise TaskCommandError(str(err)) from None
        rows = predict_rows(model, data, kind, self.meta["classes"], self.data_config.eval_batch_size,
                            answer=lambda x, lengths: self.answer(model, x, lengths))
        out = open(args.output, "w", newline="") if getattr(args, "output", None) else sys.stdout
        try:
            for row in rows:
                out.write(",".join(row) + "\n")
            out.flush()
        except BrokenPipeError:  # `| head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        finally:
            if out is not sys.stdout:
                out.close()


class _Batches:
    """`Padded` batches as trainer `Batch`es (len() for the ETA), with optional input noise
    of standard deviation `noise` at the real steps, drawn from `noise_generator`, and
    optional random crops: each sequence of length l is cut to its steps s .. s+m-1, with
    m uniform in ceil(crop·l) .. l and s uniform in 0 .. l−m, drawn from `crop_generator`, and
    an optional offset per sequence: one Gaussian vector (D,) of standard deviation
    `offset` added at all its real steps, drawn from `offset_generator`, optional time
    warps (`random_warps`, drawn from `warp_generator`), and optional magnitude scaling: one
    factor per feature and sequence, Gaussian of mean 1 and standard deviation `scale`, at all
    its real steps, drawn from `scale_generator`, and optional channel masking: each feature of
    each sequence set to 0 at all its steps with probability `mask`, drawn from `mask_generator`,
    and an optional frequency warp of each sequence's cepstrum (`cepstral_warps`, α uniform in
    ± `freq_warp`, drawn from `freq_warp_generator`), applied in the data's own units: the
    inputs are standardised by `scaler`, undone for the warp and redone after it.
    Order: warp, crop, frequency warp, scale, mask, noise, offset."""

    def __init__(self, padded, noise: float = 0.0, noise_generator: torch.Generator | None = None,
                 crop: float = 1.0, crop_generator: torch.Generator | None = None, offset: float = 0.0,
                 offset_generator: torch.Generator | None = None, warp: float = 0.0,
                 warp_generator: torch.Generator | None = None, scale: float = 0.0,
                 scale_generator: torch.Generator | None = None, mask: float = 0.0,
                 mask_generator: torch.Generator | None = None, freq_warp: float = 0.0,
                 freq_warp_generator: torch.Generator | None = None, scaler: Scaler | None = None):
        self.padded, self.noise, self.noise_generator = padded, noise, noise_generator
        self.freq_warp, self.freq_warp_generator, self.scaler = freq_warp, freq_warp_generator, scaler
        self.mask, self.mask_generator = mask, mask_generator
        self.crop, self.crop_generator = crop, crop_generator
        self.offset, self.offset_generator = offset, offset_generator
        self.warp, self.warp_generator = warp, warp_generator
        self.scale, self.scale_generator = scale, scale_generator

    def __len__(self) -> int:
        return len(self.padded)

    def __iter__(self):
        for p in self.padded:
            inputs, lengths = p.inputs, p.lengths
            if self.warp and inputs.is_floating_point():
                inputs, lengths = random_warps(inputs, lengths, self.warp, self.warp_generator)
            if self.crop < 1:
                inputs, lengths = random_crops(inputs, lengths, self.crop, self.crop_generator)
            if self.freq_warp and inputs.is_floating_point():
                inputs = self._warp_spectra(inputs, lengths)
            if self.scale and inputs.is_floating_point():
                N, L = inputs.shape[:2]
                real = length_mask(lengths, N, L).unsqueeze(-1).to(inputs.dtype)  # (N, L, 1)
                factor = torch.randn((N, 1, *inputs.shape[2:]), generator=self.scale_generator,
                                     dtype=inputs.dtype)  # (N, 1, D): the same at every step
                inputs = inputs * (1 + self.scale * factor * real)
            if self.mask and inputs.is_floating_point():
                keep = torch.rand((inputs.shape[0], 1, *inputs.shape[2:]), generator=self.mask_generator)
                inputs = inputs * (keep >= self.mask).to(inputs.dtype)  # (N, 1, D): the same at every step
            if self.noise and inputs.is_floating_point():
                N, L = inputs.shape[:2]
                real = length_mask(lengths, N, L).unsqueeze(-1).to(inputs.dtype)  # (N, L, 1)
                eps = torch.randn(inputs.shape, generator=self.noise_generator, dtype=inputs.dtype)
                inputs = inputs + self.noise * eps * real
            if self.offset and inputs.is_floating_point():
                N, L = inputs.shape[:2]
                real = length_mask(lengths, N, L).unsqueeze(-1).to(inputs.dtype)  # (N, L, 1)
                shift = torch.randn((N, 1, *inputs.shape[2:]), generator=self.offset_generator,
                                    dtype=inputs.dtype)  # (N, 1, D): the same at every step
                inputs = inputs + self.offset * shift * real
            yield Batch(inputs=inputs, targets=p.targets, lengths=lengths, size=p.size)

    def _warp_spectra(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        N, L, D = inputs.shape
        alpha = self.freq_warp * (2 * torch.rand(N, generator=self.freq_warp_generator, dtype=torch.float64) - 1)
        warps = cepstral_warps(alpha, D)  # (N, D, D)
        mean, std = ((torch.zeros(D), torch.ones(D)) if self.scaler is None else
                     (torch.as_tensor(self.scaler.mean), torch.as_tensor(self.scaler.std)))
        mean, std = mean.double(), std.double()
        raw = inputs.double() * std + mean  # (N, L, D) in the data's units
        warped = (torch.einsum("nij,nlj->nli", warps, raw) - mean) / std
        real = length_mask(lengths, N, L).unsqueeze(-1)  # (N, L, 1); padding stays as it was
        return torch.where(real, warped.to(inputs.dtype), inputs)


def cepstral_warps(alpha: torch.Tensor, order: int, points: int | None = None) -> torch.Tensor:
    """(N, D, D) matrices W(α) with c' = W(α) c for cepstra c = (c_1..c_D) of a log spectrum
    log|H(ω)| = c_0 + 2 Σ_n c_n cos nω: the cepstrum, truncated to D, of log|H(β(ω))| with the
    all-pass (bilinear) warp β(ω) = ω − 2 atan(α sin ω / (1 + α cos ω)), the map of SPTK's `freqt`
    with the same α (α > 0 moves low-frequency detail up, as a linear-to-mel warp; W(0) = I):
    W_mn = (2/π) ∫_0^π cos(n β(ω)) cos(m ω) dω, by the midpoint rule on `points` nodes (default
    max(64, 4D)), exact to rounding for these smooth periodic integrands at moderate |α| < 1."""
    alpha = torch.as_tensor(alpha, dtype=torch.float64).reshape(-1, 1)  # (N, 1)
    if alpha.abs().max() >= 1:
        raise ValueError(f"the warp needs |α| < 1, got {alpha.abs().max().item():g}")
    points = points or max(64, 4 * order)
    omega = (torch.arange(points, dtype=torch.float64) + 0.5) * math.pi / points  # (G,)
    beta = omega - 2 * torch.atan2(alpha * torch.sin(omega), 1 + alpha * torch.cos(omega))  # (N, G)
    n = torch.arange(1, order + 1, dtype=torch.float64)
    warped = torch.cos(n[None, :, None] * beta[:, None, :])  # (N, D, G): cos nβ(ω)
    plain = torch.cos(n[:, None] * omega[None, :])  # (D, G): cos mω
    return 2 / points * torch.einsum("mg,ing->imn", plain, warped)


def random_warps(inputs: torch.Tensor, lengths: torch.Tensor, fraction: float, generator: torch.Generator | None):
    """Resample each padded sequence (N, L, D) of `lengths` l to m = round(l·s) steps, s uniform
    in 1 ± fraction (m ≥ 1), by linear interpolation between its frames: step j of the result is
    the sequence at time j·(l − 1)/(m − 1), so the first and last frames are kept. Returns
    (inputs (N, max m, D), m); padding is zeros."""
    N = inputs.shape[0]
    lengths = torch.as_tensor(lengths)
    scale = 1 + fraction * (2 * torch.rand(N, generator=generator, dtype=torch.float64) - 1)
    new = torch.round(lengths.double() * scale).long().clamp(min=1)  # (N,)
    steps = torch.arange(int(new.max()), dtype=torch.float64)[None, :]  # (1, L')
    stride = (lengths - 1).double() / (new - 1).clamp(min=1).double()  # (N,)
    at = torch.minimum(steps * stride[:, None], (lengths - 1).double()[:, None])  # (N, L') source times
    lo = at.floor().long()
    hi = torch.minimum(lo + 1, (lengths - 1)[:, None])
    w = (at - lo.double()).to(inputs.dtype).unsqueeze(-1)  # (N, L', 1)
    expand = (-1, -1, *inputs.shape[2:])

    def rows(index):
        return inputs.gather(1, index.view(*index.shape, *([1] * (inputs.dim() - 2))).expand(*expand))

    out = rows(lo) * (1 - w) + rows(hi) * w
    real = length_mask(new, N, out.shape[1]).view(N, -1, *([1] * (inputs.dim() - 2)))
    return out * real.to(out.dtype), new


def random_crops(inputs: torch.Tensor, lengths: torch.Tensor, fraction: float, generator: torch.Generator | None):
    """Cut each padded sequence (N, L, ...) of `lengths` to a random contiguous part of at least
    `fraction` of its steps, moved to the start; returns (inputs, new lengths). Padding is zeros."""
    N, L = inputs.shape[:2]
    lengths = torch.as_tensor(lengths)
    shortest = torch.ceil(fraction * lengths.double()).long().clamp(min=1)
    keep = shortest + (torch.rand(N, generator=generator, dtype=torch.float64)
                       * (lengths - shortest + 1)).long().clamp(max=lengths - shortest)
    start = (torch.rand(N, generator=generator, dtype=torch.float64) * (lengths - keep + 1)).long()
    start = torch.minimum(start, lengths - keep)
    index = (start[:, None] + torch.arange(L)[None, :]).clamp(max=L - 1)  # (N, L)
    out = inputs.gather(1, index.view(N, L, *([1] * (inputs.dim() - 2))).expand_as(inputs))
    real = length_mask(keep, N, L).view(N, L, *([1] * (inputs.dim() - 2)))
    return out * real.to(out.dtype) if out.is_floating_point() else out.masked_fill(~real, 0), keep


@torch.no_grad()
def predict_rows(model, data: SequenceSet, kind: str, classes: list[str], batch_size: int = 256,
                 answer=None) -> list[list[str]]:
    """A header and one row per sequence (tag: per step) of predictions by `model` (in eval mode);
    answer(inputs, lengths), when given, replaces the model's own output (test-time copies)."""
    device = next(model.parameters()).device
    model.eval()
    header = {"value": ["id", "value"], "class": ["id", "predicted", "probability"],
              "tag": ["id", "step", "predicted", "probability"]}[kind]
    rows = [header]
    for start in range(0, len(data), batch_size):
        index = list(range(start, min(start + batch_size, len(data))))
        padded = SequenceBatches(data.subset(index), batch_size)
        p = next(iter(padded))
        if answer is not None:
            out = answer(p.inputs.to(device), p.lengths)
        else:
            out, _ = model(p.inputs.to(device), None, p.lengths)
        out = out.float().cpu()
        for row, i in enumerate(index):
            sid = _csv_field(data.ids[i])
            if kind == "value":
                rows.append([sid, f"{float(out[row, 0]):.6g}"])
            elif kind == "class":
                prob = out[row].softmax(-1)
                k = int(prob.argmax())
                rows.append([sid, _csv_field(classes[k]), f"{float(prob[k]):.4f}"])
            else:
                prob = out[row, : int(p.lengths[row])].softmax(-1)  # (L_i, K)
                for t, (k, q) in enumerate(zip(prob.argmax(-1).tolist(), prob.max(-1).values.tolist())):
                    rows.append([sid, str(t), _csv_field(classes[k]), f"{q:.4f}"])
    return rows


def _csv_field(text: str) -> str:
    text = str(text)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def train_and_evaluate(config, splits: tuple[str, ...] = ("test",), stream=None) -> dict:
    """Train a classify/tag `config` (rnnkit.config.Config) and evaluate its final weights.

    Returns {"train": TrainResult, SPLIT: metrics, ..., "train_time_s": seconds}. The final
    weights are those of the last step (fixed-epoch training); to evaluate the best
    checkpoint, use `rnnkit eval RUN_DIR` instead. For the benchmarks and notebooks.
    """
    import io
    import time

    from ..tasks.registry import get_task
    from ..train import Trainer, evaluate

    task = get_task(config.task)(config)
    start = time.process_time()
    result = Trainer(config, task, stream=stream or io.StringIO()).fit()
    cpu = time.process_time() - start
    model = task._model
    device = next(model.parameters()).device
    out = {"train": result, "train_cpu_s": cpu}
    for split in splits:
        out[split] = evaluate(task, model, task.eval_batches(split), device=device)
    return out

