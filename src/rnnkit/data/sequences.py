"""Labelled sequences of feature vectors: real data sets, a user's files, splits, scaling, ragged batches.

A `SequenceSet` is a list of (L_i, D) float32 arrays with one target per sequence
(a class index, or a real value) or one per step (tagging). Sources, all offline:

- `load_aeon(name)`: a classification set that ships inside the aeon package
  (JapaneseVowels, BasicMotions, GunPoint, ArrowHead, PickupGestureWiimoteZ, ...;
  `aeon_bundled()` lists them). aeon downloads every other set from the internet;
  rnnkit never does: such a name is refused, or read from a directory of .ts files
  (`path=`).
- `load_digits_rows()`: scikit-learn's 8×8 digits, read row by row (8 steps of 8 features).
- `load_file(path)`: a user's NumPy (.npz) or CSV file; the layout is below.
- rnnkit.data.synthetic: parity, adding, larger, copy, order.

User files:

    .npz   x        (N, L, D) or (N, L) float, padded at the end
           lengths  (N,) real lengths (optional: all L)
           y        (N,) labels (ints or strings), or (N, L) per-step labels for tagging
           ids      (N,) names of the sequences (optional; for predictions)
    .csv   one row per time step, a header row; `id` names the sequence (its rows in
           order, or ordered by an optional `step` column), `label` holds the label
           (constant within a sequence for classification, per row for tagging), every
           other column is a feature. Column names are options (id_column, ...).

Bad input stops with a `SequenceDataError` naming the sequence: labels that do not
match the sequences, NaN or infinite features, sequences of length 0, an unknown or
not-bundled data set name.

`SequenceBatches` pads each batch to its longest sequence and passes the real
lengths, so a model that honours them gives every sequence the answer it would get
alone; padded targets are IGNORE (-100) and count nowhere.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch

IGNORE = -100
"""Target of a step that the loss and the metrics skip (padding, copy's non-recall steps)."""

KINDS = ("class", "value", "tag")


class SequenceDataError(ValueError):
    """Bad sequence data: mismatched labels, NaN, empty sequences, an unknown or unavailable set."""


@dataclass
class SequenceSet:
    """Sequences of feature vectors and their targets.

    sequences: list of N arrays (L_i, D) float32, L_i >= 1.
    targets: kind "class": (N,) int64 class indices; "value": (N,) float32;
        "tag": list of N (L_i,) int64 arrays (IGNORE where a step has no target).
    classes: class names, index -> name ([] for "value").
    kind: "class", "value" or "tag".
    ids: N names (for predictions); default "0", "1", ...
    """

    sequences: list
    targets: object
    classes: list = field(default_factory=list)
    kind: str = "class"
    ids: list | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.ids is None:
            self.ids = [str(i) for i in range(len(self.sequences))]

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def input_size(self) -> int:
        return int(self.sequences[0].shape[1]) if self.sequences else 0

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.sequences], dtype=np.int64)

    def subset(self, index: Sequence[int]) -> "SequenceSet":
        index = [int(i) for i in index]
        targets = ([self.targets[i] for i in index] if self.kind == "tag"
                   else np.asarray(self.targets)[index])
        return SequenceSet([self.sequences[i] for i in index], targets, list(self.classes), self.kind,
                           [self.ids[i] for i in index])

    def num_items(self) -> int:
        """What the loss averages over: sequences, or tagged steps."""
        if self.kind == "tag":
            return int(sum(int((t != IGNORE).sum()) for t in self.targets))
        return len(self)

    def check(self, name: str = "data") -> "SequenceSet":
        """Raise SequenceDataError for empty sets, ragged feature sizes, empty sequences, NaN/Inf,
        label counts or lengths that do not match, class indices out of range. Returns self."""
        if len(self) == 0:
            raise SequenceDataError(f"{name}: no sequences")
        n_targets = len(self.targets)
        if n_targets != len(self):
            raise SequenceDataError(f"{name}: {len(self)} sequences but {n_targets} labels; "
                                    "give exactly one label per sequence")
        if len(self.ids) != len(self):
            raise SequenceDataError(f"{name}: {len(self)} sequences but {len(self.ids)} ids")
        D = self.input_size
        for i, (s, sid) in enumerate(zip(self.sequences, self.ids)):
            if s.ndim != 2:
                raise SequenceDataError(f"{name}: sequence {sid!r} has shape {s.shape}; expected (steps, features)")
            if len(s) == 0:
                raise SequenceDataError(f"{name}: sequence {sid!r} has length 0; every sequence needs at "
                                        "least one step (drop it from the data)")
            if s.shape[1] != D:
                raise SequenceDataError(f"{name}: sequence {sid!r} has {s.shape[1]} features, the first one "
                                        f"has {D}")
            bad = ~np.isfinite(s)
            if bad.any():
                step, feature = (int(v) for v in np.argwhere(bad)[0])
                raise SequenceDataError(f"{name}: sequence {sid!r} has {int(bad.sum())} NaN or infinite "
                                        f"value(s), the first at step {step}, feature {feature}; fill or "
                                        "drop them before training")
            if self.kind == "tag" and len(self.targets[i]) != len(s):
                raise SequenceDataError(f"{name}: sequence {sid!r} has {len(s)} steps but "
                                        f"{len(self.targets[i])} step labels")
        K = len(self.classes)
        if self.kind == "class":
            t = np.asarray(self.targets)
            if t.min() < 0 or t.max() >= K:
                raise SequenceDataError(f"{name}: class index out of range 0..{K - 1}")
        elif self.kind == "tag":
            for t, sid in zip(self.targets, self.ids):
                real = t[t != IGNORE]
                if real.size and (real.min() < 0 or real.max() >= K):
                    raise SequenceDataError(f"{name}: sequence {sid!r}: step label out of range 0..{K - 1}")
        elif not np.isfinite(np.asarray(self.targets, dtype=np.float64)).all():
            raise SequenceDataError(f"{name}: NaN or infinite target value")
        return self


# ----------------------------------------------------------------------------- labels


def encode_labels(raw: Sequence, classes: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Labels (any values) -> (indices (N,) int64, class names).

    Without `classes`, the names are the distinct labels as text, sorted numerically when
    they are all numbers ("2" before "10"), else alphabetically. With `classes` (from a
    trained run), a label outside them is a SequenceDataError.
    """
    text = [_label_text(v) for v in raw]
    if classes is None:
        distinct = set(text)
        try:
            classes = sorted(distinct, key=float)
        except ValueError:
            classes = sorted(distinct)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(text) - set(index))
    if unknown:
        raise SequenceDataError(f"labels {unknown[:5]} are not among the {len(classes)} classes of "
                                f"this model: {classes[:20]}")
    return np.array([index[t] for t in text], dtype=np.int64), list(classes)


def _label_text(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # 3.0 read from a CSV is the class "3"
    return str(value)


# ----------------------------------------------------------------------------- aeon


def _aeon_root() -> Path:
    try:
        import aeon
    except ImportError:
        raise SequenceDataError("aeon is not installed: pip install 'rnnkit[classify]'") from None
    return Path(aeon.__file__).parent / "datasets" / "data"


def _is_classification_ts(path: Path) -> bool:
    with open(path, errors="replace") as f:
        for line in f:
            low = line.strip().lower()
            if low.startswith("@classlabel"):
                return low.split()[1:2] == ["true"]
            if low.startswith("@data"):
                return False
    return False


def aeon_bundled(root: Path | None = None) -> list[str]:
    """Names of the classification sets found in `root` (default: the ones aeon ships)."""
    root = Path(root) if root is not None else _aeon_root()
    names = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            train, test = d / f"{d.name}_TRAIN.ts", d / f"{d.name}_TEST.ts"
            if train.exists() and test.exists() and _is_classification_ts(train):
                names.append(d.name)
    return names


def load_aeon(name: str, split: str, path: str | Path | None = None, classes: list[str] | None = None) -> SequenceSet:
    """The `split` ("train" or "test") of aeon classification set `name`, never downloading.

    `path`: a directory holding NAME/NAME_TRAIN.ts and NAME/NAME_TEST.ts (a set you
    downloaded yourself); default: the sets bundled in the aeon package. Variable-length
    sets (JapaneseVowels, PickupGestureWiimoteZ) keep their own lengths.
    classes: the class names to encode the labels with (a label outside them is an error);
    None fits them (sorted, see encode_labels).
    """
    root = Path(path) if path else _aeon_root()
    available = aeon_bundled(root)
    if name not in available:
        where = f"in {root}" if path else "offline (bundled in the aeon package)"
        known = _aeon_known_names()
        if name in known:
            raise SequenceDataError(
                f"aeon data set {name!r} is not available {where}: aeon would download it from the internet, "
                f"which rnnkit never does. Available: {', '.join(available) or 'none'}. To use it, download "
                f"{name}_TRAIN.ts and {name}_TEST.ts yourself into DIR/{name}/ and set data.path=DIR")
        import difflib

        near = difflib.get_close_matches(name, available + sorted(known), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise SequenceDataError(f"unknown data set {name!r}{hint}; available {where}: {', '.join(available)}")
    from aeon.datasets import load_classification

    # extract_path pointing at the files themselves: aeon reads them and never goes online
    X, y = load_classification(name, split=split, extract_path=str(root))
    sequences = [np.ascontiguousarray(np.asarray(x, dtype=np.float32).T) for x in X]  # (C, L) -> (L, C)
    targets, classes = encode_labels(list(y), classes)
    return SequenceSet(sequences, targets, classes, "class", [f"{split}-{i}" for i in range(len(sequences))])


def _aeon_known_names() -> set[str]:
    """Every classification set aeon knows how to download (empty if aeon cannot tell)."""
    try:
        from aeon.datasets import tsc_datasets
    except ImportError:
        return set()
    names = set()
    for attr in ("tsc_zenodo", "univariate", "multivariate", "univariate_equal_length",
                 "multivariate_equal_length"):
        names |= set(getattr(tsc_datasets, attr, ()) or ())
    return names


# ----------------------------------------------------------------------------- scikit-learn digits


def load_digits_rows() -> SequenceSet:
    """scikit-learn's 1797 handwritten digits, each an 8-step sequence of its 8 pixel rows (0..16)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SequenceDataError("scikit-learn is not installed: pip install 'rnnkit[classify]'") from None
    digits = load_digits()
    images = digits.images.astype(np.float32)  # (N, 8, 8): steps = rows, features = columns
    return SequenceSet(list(images), digits.target.astype(np.int64), [str(k) for k in range(10)], "class")


# ----------------------------------------------------------------------------- user files


@dataclass(frozen=True)
class FileLayout:
    """Column names of the CSV layout (see the module docstring)."""

    id_column: str = "id"
    label_column: str = "label"
    step_column: str = ""


def load_file(path: str | Path, kind: str = "class", classes: list[str] | None = None,
              layout: FileLayout = FileLayout(), require_labels: bool = True) -> SequenceSet:
    """A user's sequences from an .npz or .csv file (layouts in the module docstring).

    kind: "class" (one label per sequence) or "tag" (one per step). classes: the class
    names of a trained run (labels outside them are an error); None fits them here.
    require_labels: False for prediction input, where labels may be absent (targets zeros).
    """
    path = Path(path)
    if not path.exists():
        raise SequenceDataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        seqs, raw, ids = _read_npz(path, kind, require_labels)
    elif suffix in (".csv", ".tsv", ".txt"):
        seqs, raw, ids = _read_csv(path, kind, layout, require_labels)
    else:
        raise SequenceDataError(f"{path}: expected a .npz or .csv file, got {suffix or 'no suffix'}")
    if raw is None:
        targets = [np.zeros(len(s), dtype=np.int64) for s in seqs] if kind == "tag" else np.zeros(len(seqs), np.int64)
        return SequenceSet(seqs, targets, list(classes or []), kind, ids)
    if len(raw) != len(seqs):
        raise SequenceDataError(f"{path}: {len(seqs)} sequences but {len(raw)} labels; give exactly one "
                                f"{'label sequence' if kind == 'tag' else 'label'} per sequence")
    if kind == "tag":
        flat, classes = encode_labels([v for r in raw for v in r], classes)
        cuts = np.cumsum([len(r) for r in raw])[:-1]
        targets = [t.astype(np.int64) for t in np.split(flat, cuts)]
    else:
        targets, classes = encode_labels(raw, classes)
    return SequenceSet(seqs, targets, classes, kind, ids)


def _read_npz(path: Path, kind: str, require_labels: bool):
    with np.load(path, allow_pickle=False) as f:
        if "x" not in f:
            raise SequenceDataError(f"{path}: no array 'x' (expected x (N, L, D), optional lengths (N,), "
                                    f"y (N,) or (N, L), ids (N,)); it has {sorted(f.files)}")
        x = np.asarray(f["x"], dtype=np.float32)
        if x.ndim == 2:
            x = x[:, :, None]
        if x.ndim != 3:
            raise SequenceDataError(f"{path}: x has shape {x.shape}; expected (N, L, D) or (N, L)")
        N, L = x.shape[:2]
        lengths = np.asarray(f["lengths"]) if "lengths" in f else np.full(N, L)
        if lengths.shape != (N,):
            raise SequenceDataError(f"{path}: lengths has shape {lengths.shape}; expected ({N},), one per sequence")
        if lengths.min(initial=1) < 0 or lengths.max(initial=0) > L:
            raise SequenceDataError(f"{path}: lengths must lie in 0..{L} (the padded length)")
        seqs = [x[i, : int(lengths[i])] for i in range(N)]
        ids = [str(v) for v in f["ids"]] if "ids" in f else [str(i) for i in range(N)]
        if "y" not in f:
            if require_labels:
                raise SequenceDataError(f"{path}: no labels (array 'y')")
            return seqs, None, ids
        y = np.asarray(f["y"])
    if kind == "tag":
        if y.ndim != 2 or y.shape[0] != N:
            raise SequenceDataError(f"{path}: y has shape {y.shape}; tagging needs (N, L) = ({N}, {L}) step labels")
        raw = [list(y[i, : len(seqs[i])]) for i in range(N)]
    else:
        if y.ndim != 1:
            raise SequenceDataError(f"{path}: y has shape {y.shape}; classification needs (N,) labels")
        raw = list(y)
    return seqs, raw, ids


def _read_csv(path: Path, kind: str, layout: FileLayout, require_labels: bool):
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise SequenceDataError(f"{path}: empty file")
        header = [h.strip() for h in header]
        if layout.id_column not in header:
            raise SequenceDataError(f"{path}: no id column {layout.id_column!r} in the header {header}")
        has_label = layout.label_column in header
        if require_labels and not has_label:
            raise SequenceDataError(f"{path}: no label column {layout.label_column!r} in the header {header}")
        special = {layout.id_column, layout.label_column, layout.step_column}
        features = [i for i, h in enumerate(header) if h not in special]
        if not features:
            raise SequenceDataError(f"{path}: no feature columns (every column but id/label/step is a feature)")
        id_at = header.index(layout.id_column)
        label_at = header.index(layout.label_column) if has_label else None
        step_at = header.index(layout.step_column) if layout.step_column in header else None
        rows: dict[str, list] = {}
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise SequenceDataError(f"{path}, line {line_no}: {len(row)} fields, the header has {len(header)}")
            try:
                values = [float(row[i]) if row[i].strip() else math.nan for i in features]
                step = float(row[step_at]) if step_at is not None else len(rows.get(row[id_at], ()))
            except ValueError as err:
                raise SequenceDataError(f"{path}, line {line_no}: {err}") from None
            rows.setdefault(row[id_at], []).append((step, values, row[label_at].strip() if has_label else None))
    seqs, raw, ids = [], [], []
    for sid, items in rows.items():
        items.sort(key=lambda r: r[0])
        seqs.append(np.array([r[1] for r in items], dtype=np.float32).reshape(len(items), len(features)))
        labels = [r[2] for r in items]
        if kind == "tag":
            raw.append(labels)
        else:
            if len(set(labels)) > 1:
                raise SequenceDataError(f"{path}: sequence {sid!r} has {len(set(labels))} different labels "
                                        f"({sorted(set(labels))[:5]}); classification needs one per sequence "
                                        "(use task 'tag' for a label per step)")
            raw.append(labels[0])
        ids.append(sid)
    return seqs, (raw if has_label else None), ids


def save_npz(path: str | Path, data: SequenceSet) -> None:
    """Write `data` in the .npz layout (x padded with zeros, lengths, y, ids)."""
    L = int(data.lengths.max())
    x = np.zeros((len(data), L, data.input_size), dtype=np.float32)
    for i, s in enumerate(data.sequences):
        x[i, : len(s)] = s
    if data.kind == "tag":
        y = np.full((len(data), L), IGNORE, dtype=np.int64)
        for i, t in enumerate(data.targets):
            y[i, : len(t)] = t
    else:
        y = np.asarray(data.targets)
    np.savez(path, x=x, lengths=data.lengths, y=y, ids=np.array(data.ids))


# ----------------------------------------------------------------------------- splits


def stratified_split(labels: np.ndarray | None, count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out): `fraction` of each class held out (at least one per class with
    two or more members), or of all items when `labels` is None. Seeded, sorted."""
    rng = np.random.default_rng(seed)
    if labels is None:
        perm = rng.permutation(count)
        cut = int(round(count * fraction))
        return np.sort(perm[cut:]), np.sort(perm[:cut])
    held = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n = int(round(len(members) * fraction))
        if n == 0 and len(members) > 1 and fraction > 0:
            n = 1
        held.extend(members[:n])
    held = np.sort(np.array(held, dtype=np.int64))
    keep = np.setdiff1d(np.arange(count), held)
    return keep, held


def kfold_split(labels: np.ndarray | None, count: int, folds: int, fold: int, seed: int,
                contiguous: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, valid) of fold `fold` of `folds` (stratified when `labels` is given): each
    class's members at random (seeded), or with `contiguous` cut in their order into `folds`
    consecutive blocks, so that data recorded in order is validated on another stretch of time."""
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be in 0..{folds - 1}, got {fold}")
    rng = np.random.default_rng(seed)
    groups = [np.arange(count)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    valid = []
    for members in groups:
        if contiguous:
            valid.extend(np.array_split(members, folds)[fold])
        else:
            members = rng.permutation(members)
            valid.extend(members[fold::folds])
    valid = np.sort(np.array(valid, dtype=np.int64))
    return np.setdiff1d(np.arange(count), valid), valid


# ----------------------------------------------------------------------------- scaling


@dataclass
class Scaler:
    """Per-feature standardisation x' = (x - mean) / std, fitted on the real steps of the training split."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, data: SequenceSet) -> "Scaler":
        steps = np.concatenate(data.sequences, axis=0).astype(np.float64)  # (sum L_i, D)
        std = steps.std(axis=0)
        std[std < 1e-8] = 1.0  # a constant feature stays as it is, shifted to 0
        return cls(steps.mean(axis=0), std)

    @classmethod
    def identity(cls, size: int) -> "Scaler":
        return cls(np.zeros(size), np.ones(size))

    def apply(self, data: SequenceSet) -> SequenceSet:
        if data.input_size != len(self.mean):
            raise SequenceDataError(f"the sequences have {data.input_size} features; this model was trained "
                                    f"on {len(self.mean)}")
        mean, std = self.mean.astype(np.float32), self.std.astype(np.float32)
        return SequenceSet([(s - mean) / std for s in data.sequences], data.targets, data.classes, data.kind, data.ids)

    def to_json(self) -> dict:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_json(cls, obj: dict) -> "Scaler":
        return cls(np.array(obj["mean"], dtype=np.float64), np.array(obj["std"], dtype=np.float64))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json()))

    @classmethod
    def load(cls, path: str | Path) -> "Scaler":
        return cls.from_json(json.loads(Path(path).read_text()))


# ----------------------------------------------------------------------------- batches


class Padded(NamedTuple):
    """A padded batch of sequences (a task wraps it in `rnnkit.train.Batch`)."""

    inputs: torch.Tensor   # (N, L, D) float32, zeros after each sequence's end
    lengths: torch.Tensor  # (N,) int64
    targets: torch.Tensor  # (N,) or (N, L) with IGNORE at padded steps
    size: int              # items the loss averages over: N, or the tagged steps


def pad_batch(data: SequenceSet, index: Sequence[int]) -> Padded:
    """Sequences `index` of `data` padded with zeros to the longest of them.

    inputs (N, L, D) float32; lengths (N,) int64; targets: (N,) class indices or values,
    or (N, L) step labels with IGNORE at padded steps. size: N, or the tagged steps.
    """
    seqs = [data.sequences[i] for i in index]
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
    L = int(lengths.max())
    x = torch.zeros(len(seqs), L, data.input_size)
    for row, s in enumerate(seqs):
        x[row, : len(s)] = torch.from_numpy(np.asarray(s, dtype=np.float32))
    if data.kind == "tag":
        y = torch.full((len(seqs), L), IGNORE, dtype=torch.int64)
        for row, i in enumerate(index):
            y[row, : len(data.targets[i])] = torch.from_numpy(np.asarray(data.targets[i], dtype=np.int64))
        size = int((y != IGNORE).sum())
    else:
        t = np.asarray(data.targets)[list(index)]
        y = torch.from_numpy(t.astype(np.float32 if data.kind == "value" else np.int64))
        size = len(seqs)
    return Padded(x, lengths, y, size)


class SequenceBatches:
    """`Padded` batches of whole sequences, padded per batch, shuffled by a generator.

    Args:
        data: a SequenceSet.
        batch_size: sequences per batch (the last batch may be smaller).
        generator: a torch.Generator to shuffle with (`epoch_generator(seed, epoch)`), or None
            to keep the order.
    """

    def __init__(self, data: SequenceSet, batch_size: int, generator: torch.Generator | None = None):
        self.data, self.batch_size = data, batch_size
        n = len(data)
        self.order = (torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)).tolist()

    def __len__(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.order), self.batch_size):
            yield pad_batch(self.data, self.order[start: start + self.batch_size])

