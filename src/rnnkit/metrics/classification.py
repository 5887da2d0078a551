"""Classification metrics from a confusion matrix: accuracy, precision, recall, F1, IoU.

    C[i, j] = number of items of true class i predicted as class j     (rows true, columns predicted)
    tp_k = C[k, k]   fp_k = Σ_i C[i, k] − tp_k   fn_k = Σ_j C[k, j] − tp_k
    precision_k = tp / (tp + fp)   recall_k = tp / (tp + fn)   F1_k = 2 tp / (2 tp + fp + fn)
    IoU_k (Jaccard) = tp / (tp + fp + fn)
    accuracy = Σ_k tp_k / Σ C

A ratio whose denominator is 0 counts as 0 (scikit-learn's zero_division=0). Macro
averages run over the classes that occur in the true or the predicted labels, as
scikit-learn's do when it is not given the label list; `average="micro"` pools the
counts; `average=None` gives the per-class values. The test suite compares all of
these with scikit-learn on random inputs. Everything accepts a confusion matrix, so
counts gathered batch by batch (and summed over processes) give the exact figures.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

IGNORE = -100


def confusion_matrix(y_true, y_pred, num_classes: int | None = None, ignore_index: int | None = IGNORE) -> np.ndarray:
    """(K, K) int64 counts, rows the true class, columns the predicted one.

    y_true, y_pred: integer arrays (any shape, the same); items whose true label is
    `ignore_index` are left out. num_classes: K (default: 1 + the largest label seen).
    """
    t = np.asarray(y_true).reshape(-1).astype(np.int64)
    p = np.asarray(y_pred).reshape(-1).astype(np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in size: {t.size} and {p.size}")
    if ignore_index is not None:
        keep = t != ignore_index
        t, p = t[keep], p[keep]
    if num_classes is None:
        num_classes = int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _counts(cm: np.ndarray):
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0  # in y_true or y_pred
    return tp, fp, fn, present


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def _average(per_class: np.ndarray, present: np.ndarray, average: str | None, micro: float):
    if average is None:
        return per_class
    if average == "macro":
        return float(per_class[present].mean()) if present.any() else 0.0
    if average == "micro":
        return float(micro)
    raise ValueError(f"average must be 'macro', 'micro' or None, got {average!r}")


def accuracy(cm: np.ndarray) -> float:
    """Fraction of items on the diagonal (0 for an empty matrix)."""
    cm = np.asarray(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else 0.0


def precision(cm: np.ndarray, average: str | None = "macro"):
    """tp / (tp + fp) per class, macro- or micro-averaged."""
    tp, fp, fn, present = _counts(cm)
    return _average(_ratio(tp, tp + fp), present, average, _ratio(tp.sum(), tp.sum() + fp.sum()))


def recall(cm: np.ndarray, average: str | None = "macro"):
    """tp / (tp + fn) per class, macro- or micro-averaged."""
    tp, fp, fn, present = _counts(cm)
    return _average(_ratio(tp, tp + fn), present, average, _ratio(tp.sum(), tp.sum() + fn.sum()))


def f1(cm: np.ndarray, average: str | None = "macro"):
    """2 tp / (2 tp + fp + fn) per class (the harmonic mean of precision and recall), averaged."""
    tp, fp, fn, present = _counts(cm)
    return _average(_ratio(2 * tp, 2 * tp + fp + fn), present, average,
                    _ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum()))


def iou(cm: np.ndarray, average: str | None = "macro"):
    """Intersection over union (Jaccard index) tp / (tp + fp + fn) per class, averaged."""
    tp, fp, fn, present = _counts(cm)
    return _average(_ratio(tp, tp + fp + fn), present, average, _ratio(tp.sum(), tp.sum() + fp.sum() + fn.sum()))


def classification_metrics(cm: np.ndarray) -> dict[str, float]:
    """{accuracy, macro_precision, macro_recall, macro_f1, mean_iou} of a confusion matrix."""
    return {"accuracy": accuracy(cm), "macro_precision": precision(cm), "macro_recall": recall(cm),
            "macro_f1": f1(cm), "mean_iou": iou(cm)}


def format_confusion(cm: np.ndarray, class_names: Sequence[str] | None = None) -> str:
    """The matrix as aligned text, rows true and columns predicted, with per-class recall."""
    cm = np.asarray(cm)
    names = [str(n) for n in (class_names if class_names is not None else range(len(cm)))]
    width = max([len(n) for n in names] + [len(str(int(cm.max(initial=0)))), 4])
    per_recall = recall(cm, average=None)
    head = " " * (width + 2) + " ".join(f"{n:>{width}}" for n in names) + "   recall"
    lines = ["confusion matrix (rows: true class, columns: predicted)", head]
    for name, row, r in zip(names, cm, per_recall):
        lines.append(f"{name:>{width}}  " + " ".join(f"{int(v):>{width}}" for v in row) + f"   {r:.3f}")
    return "\n".join(lines)


def save_confusion_png(cm: np.ndarray, path: str | Path, class_names: Sequence[str] | None = None,
                       title: str = "") -> Path:
    """Draw the confusion matrix (counts, shaded by row-normalised recall) into a PNG; needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    K = len(cm)
    names = [str(n) for n in (class_names if class_names is not None else range(K))]
    rows = cm.sum(axis=1, keepdims=True)
    shade = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    size = min(3 + 0.45 * K, 14)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(shade, cmap="Blues", vmin=0, vmax=1)
    if K <= 30:
        for i in range(K):
            for j in range(K):
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if shade[i, j] > 0.5 else "black")
    ax.set_xticks(range(K), names, rotation=90 if max(map(len, names)) > 3 else 0)
    ax.set_yticks(range(K), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {accuracy(cm):.4f}, macro F1 {f1(cm):.4f}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
