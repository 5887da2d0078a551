"""Forecast accuracy: RMSE, MAE, MASE, sMAPE; probabilistic: NLL, CRPS, pinball loss, interval coverage.

All functions take numpy arrays of the same shape (any), actual values `y`, and
average over every element unless said otherwise. A `Predictive` holds one method's
forecasts of a set of target values (a point, central intervals, per-value CRPS and
NLL where the method defines them) and `score` turns it into one row of the table
that `rnnkit eval` and benchmarks/forecast_quality.py print.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

LEVELS = (0.8, 0.95)


def rmse(pred, y) -> float:
    """sqrt(mean((pred − y)²))."""
    return float(np.sqrt(np.mean((np.asarray(pred) - np.asarray(y)) ** 2)))


def mae(pred, y) -> float:
    """mean |pred − y|."""
    return float(np.mean(np.abs(np.asarray(pred) - np.asarray(y))))


def naive_scale(train: np.ndarray, period: int = 1) -> float:
    """In-sample MAE of the (seasonal) naive forecast on training values: MASE's scale (Hyndman & Koehler 2006)."""
    train = np.asarray(train, dtype=np.float64)
    d = np.abs(train[period:] - train[:-period])
    value = float(np.nanmean(d)) if d.size else float("nan")
    return value if value > 0 else float("nan")


def mase(pred, y, scale: float) -> float:
    """MAE / scale, scale = `naive_scale(train)`: below 1 beats the in-sample naive forecast."""
    return mae(pred, y) / scale


def smape(pred, y) -> float:
    """Symmetric MAPE in percent: 200·mean(|pred − y| / (|pred| + |y|)) (0/0 counts as 0)."""
    pred, y = np.asarray(pred, dtype=np.float64), np.asarray(y, dtype=np.float64)
    den = np.abs(pred) + np.abs(y)
    ratio = np.divide(np.abs(pred - y), den, out=np.zeros_like(den), where=den > 0)
    return float(200 * np.mean(ratio))


def coverage(lower, upper, y) -> float:
    """Share of y inside [lower, upper]."""
    y = np.asarray(y)
    return float(np.mean((np.asarray(lower) <= y) & (y <= np.asarray(upper))))


def pinball(quantile, y, q: float) -> float:
    """Pinball (quantile) loss of a q-quantile forecast: mean max(q·(y − f), (q − 1)·(y − f))."""
    diff = np.asarray(y) - np.asarray(quantile)
    return float(np.mean(np.maximum(q * diff, (q - 1) * diff)))


def crps_samples(samples, y) -> np.ndarray:
    """CRPS per value from samples (S, ...) of each: E|X − y| − ½ E|X − X'| (Gneiting & Raftery 2007).

    E|X − X'| uses the sorted samples: (2/S²) Σ_i (2i − S − 1) x_(i), O(S log S).
    """
    samples, y = np.asarray(samples, dtype=np.float64), np.asarray(y, dtype=np.float64)
    S = samples.shape[0]
    first = np.mean(np.abs(samples - y[None]), axis=0)
    ordered = np.sort(samples, axis=0)
    weights = (2 * np.arange(1, S + 1) - S - 1).reshape((S,) + (1,) * y.ndim)
    spread = 2 * np.sum(weights * ordered, axis=0) / S ** 2
    return first - 0.5 * spread


def _phi(z):
    return np.exp(-0.5 * z ** 2) / math.sqrt(2 * math.pi)


def _Phi(z):
    from math import erf

    return 0.5 * (1 + np.vectorize(erf)(z / math.sqrt(2)))


def crps_gaussian(mean, std, y) -> np.ndarray:
    """Closed-form CRPS of N(mean, std²) per value: σ [z(2Φ(z) − 1) + 2φ(z) − 1/√π], z = (y − μ)/σ."""
    mean, std, y = (np.asarray(a, dtype=np.float64) for a in (mean, std, y))
    z = (y - mean) / std
    return std * (z * (2 * _Phi(z) - 1) + 2 * _phi(z) - 1 / math.sqrt(math.pi))


def gaussian_nll(mean, std, y) -> np.ndarray:
    """−log N(y | mean, std²) per value (nats)."""
    mean, std, y = (np.asarray(a, dtype=np.float64) for a in (mean, std, y))
    return 0.5 * ((y - mean) / std) ** 2 + np.log(std) + 0.5 * math.log(2 * math.pi)


def gaussian_quantile(mean, std, q: float) -> np.ndarray:
    from statistics import NormalDist

    return np.asarray(mean) + np.asarray(std) * NormalDist().inv_cdf(q)


@dataclass
class Predictive:
    """One method's forecasts of M target values (any shape, e.g. (origins, h, C)).

    point: the forecast; lower/upper: level -> central interval bounds; crps and nll:
    per value, or None where the method does not define them (point forecasts).
    """

    name: str
    point: np.ndarray
    lower: dict = field(default_factory=dict)
    upper: dict = field(default_factory=dict)
    crps: np.ndarray | None = None
    nll: np.ndarray | None = None
    note: str = ""

    @classmethod
    def from_samples(cls, name: str, samples: np.ndarray, y: np.ndarray | None, point: np.ndarray | None = None,
                     nll: np.ndarray | None = None, levels=LEVELS, note: str = "") -> "Predictive":
        """From sample paths (S, ...): intervals from empirical quantiles, CRPS from the samples (y None: no CRPS)."""
        lower, upper = {}, {}
        for level in levels:
            lower[level], upper[level] = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
        crps = None if y is None else crps_samples(samples, y)
        return cls(name, samples.mean(0) if point is None else point, lower, upper, crps, nll, note)

    @classmethod
    def from_gaussian(cls, name: str, mean: np.ndarray, std: np.ndarray, y: np.ndarray, levels=LEVELS,
                      note: str = "") -> "Predictive":
        """From Gaussian forecasts: closed-form intervals, CRPS and NLL."""
        lower = {lv: gaussian_quantile(mean, std, (1 - lv) / 2) for lv in levels}
        upper = {lv: gaussian_quantile(mean, std, (1 + lv) / 2) for lv in levels}
        return cls(name, np.asarray(mean), lower, upper, crps_gaussian(mean, std, y), gaussian_nll(mean, std, y),
                   note)


def score(pred: Predictive, y: np.ndarray, scale: float = float("nan")) -> dict[str, float]:
    """One row of the forecast table: rmse, mae, mase, smape, nll, crps, cover80, cover95 (NaN where undefined)."""
    y = np.asarray(y, dtype=np.float64)
    row = {"rmse": rmse(pred.point, y), "mae": mae(pred.point, y), "mase": mase(pred.point, y, scale),
           "smape": smape(pred.point, y)}
    row["nll"] = float(np.mean(pred.nll)) if pred.nll is not None else float("nan")
    row["crps"] = float(np.mean(pred.crps)) if pred.crps is not None else float("nan")
    for level in LEVELS:
        key = f"cover{int(round(level * 100))}"
        row[key] = coverage(pred.lower[level], pred.upper[level], y) if level in pred.lower else float("nan")
    return row


def format_table(rows: dict[str, dict[str, float]], title: str = "", notes: dict[str, str] | None = None) -> str:
    """A fixed-width table: one line per method, '—' where a figure is undefined."""
    cols = ["rmse", "mae", "mase", "smape", "nll", "crps", "cover80", "cover95"]
    width = max([len(n) for n in rows] + [6])
    lines = [title] if title else []
    lines.append(f"{'method':<{width}}  " + "  ".join(f"{c:>8}" for c in cols))
    for name, row in rows.items():
        cells = []
        for c in cols:
            v = row.get(c, float("nan"))
            cells.append(f"{'—':>8}" if v is None or not np.isfinite(v) else
                         (f"{v:>8.1%}" if c.startswith("cover") else f"{v:>8.4g}"))
        line = f"{name:<{width}}  " + "  ".join(cells)
        if notes and notes.get(name):
            line += f"  {notes[name]}"
        lines.append(line)
    return "\n".join(lines)
