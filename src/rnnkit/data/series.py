"""Time series for forecasting: loading, missing values, transforms fitted on the training part, windows.

    series = load_series("co2", resample="MS")                 # 526 monthly means, 5 of them missing
    values = fill_missing(series.values, "interpolate")         # or "drop" (drop the windows) or "error"
    split = TimeSplit.make(len(series), valid_size=60, test_size=60)
    transform = SeriesTransform(difference=1, seasonal_difference=1, period=12).fit(values[:split.valid_start])
    z = transform.forward(values)                               # (T, C): NaN where undefined (first d + D·s)
    windows = make_windows(z, window=24, horizon=1, origins=split.origins("train", 24, 1))

Shapes: T time steps, C value columns (channels), L window length, h horizon.
Every split is by time: the training part is everything before `valid_start`,
validation before `test_start`, test after; windows are assigned to the split of
their *targets*, so no target is ever seen in training that is scored later. Inputs
of a test window may reach back into earlier parts (the observed history, as in a
rolling one-step-ahead evaluation).

Transforms, applied in this order and inverted in reverse: log or power (y^p, 0.5 the
square root: variance-stabilising for counts such as sunspots), linear detrending
(a + b·t fitted on the training part per column), differencing (1 − B)^d (1 − B^s)^D,
scaling (standard: mean and std of the training part). All statistics come from the
training part only and are stored (`to_dict`/`from_dict`, the run's scaler.json).
An RNN on scaled levels cannot forecast beyond the range it was trained on: use
differencing or detrending for trending series.

Bad input raises a named `SeriesError` subclass: `SeriesTooShortError`,
`NonNumericColumnError`, `AllNaNColumnError`, `UnsortedTimestampsError`,
`DuplicateTimestampsError`, `MissingValuesError`, `BadHorizonError`,
`UnknownSeriesError`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np


class SeriesError(ValueError):
    """A problem with a time series or its windowing; subclasses name the problem."""


class SeriesTooShortError(SeriesError):
    """Fewer time steps than a window plus its horizon (or than a split needs)."""


class NonNumericColumnError(SeriesError):
    """A value column holds text that is not a number."""


class AllNaNColumnError(SeriesError):
    """A value column has no values at all."""


class UnsortedTimestampsError(SeriesError):
    """Timestamps go backwards."""


class DuplicateTimestampsError(SeriesError):
    """The same timestamp appears twice."""


class MissingValuesError(SeriesError):
    """Missing values under the `error` policy."""


class BadHorizonError(SeriesError):
    """A horizon (or window, stride) that is not a positive integer."""


class UnknownSeriesError(SeriesError):
    """A built-in series name that does not exist, or a column it does not have."""


@dataclass
class Series:
    """A (possibly multivariate) series: `values` (T, C) float64 with NaN for missing, `index` (T,) times."""

    name: str
    values: np.ndarray
    index: np.ndarray
    columns: list[str]
    period: int = 1  # seasonal period (12 monthly, 4 quarterly, 52 weekly; 1 none)

    def __len__(self) -> int:
        return len(self.values)


# ----------------------------------------------------------------------------- loading

# name -> (loader, default period, description)
BUILTIN = {
    "sunspots": "yearly sunspot numbers 1700-2008 (309), statsmodels",
    "co2": "weekly Mauna Loa CO2 1958-2001 (2284, 59 missing), statsmodels; resample: MS for monthly",
    "nile": "yearly Nile flow at Aswan 1871-1970 (100), statsmodels",
    "elnino": "monthly sea surface temperature 1950-2010 (732), statsmodels",
    "macrodata": "quarterly US macro data 1959-2009 (203), statsmodels; columns: realgdp, cpi, unemp, ...",
    "airline": "monthly airline passengers 1949-1960 (144), aeon",
    "lynx": "yearly Canadian lynx trappings 1821-1934 (114), aeon",
}


def builtin_series() -> list[str]:
    """Names of the series shipped with the installed packages."""
    return list(BUILTIN)


def _statsmodels():
    try:
        from statsmodels import datasets
    except ImportError:
        raise UnknownSeriesError("the built-in series need statsmodels: pip install 'rnnkit[forecast]'") from None
    return datasets


def _aeon(name: str):
    import warnings

    try:
        from aeon import datasets
    except ImportError:
        raise UnknownSeriesError(f"series {name!r} comes with aeon: pip install aeon") from None
    with warnings.catch_warnings():  # aeon 1.6 deprecates load_lynx
        warnings.simplefilter("ignore", FutureWarning)
        return getattr(datasets, f"load_{name}")()


def _load_builtin(name: str):
    """(pandas DataFrame indexed by time, period) of a built-in series."""
    import pandas as pd

    if name == "sunspots":
        df = _statsmodels().sunspots.load_pandas().data
        return df.set_index(df["YEAR"].astype(int))[["SUNACTIVITY"]].rename(columns={"SUNACTIVITY": "sunspots"}), 11
    if name == "co2":
        df = _statsmodels().co2.load_pandas().data
        return df, 52
    if name == "nile":
        df = _statsmodels().nile.load_pandas().data
        return df.set_index(df["year"].astype(int))[["volume"]], 1
    if name == "elnino":
        df = _statsmodels().elnino.load_pandas().data
        months = df.drop(columns="YEAR").to_numpy().reshape(-1)  # row by row: Jan..Dec of each year
        index = pd.date_range(f"{int(df['YEAR'].iloc[0])}-01-01", periods=len(months), freq="MS")
        return pd.DataFrame({"sst": months}, index=index), 12
    if name == "macrodata":
        df = _statsmodels().macrodata.load_pandas().data
        index = pd.PeriodIndex.from_fields(year=df["year"].astype(int), quarter=df["quarter"].astype(int),
                                           freq="Q").to_timestamp()
        return df.drop(columns=["year", "quarter"]).set_index(index), 4
    if name in ("airline", "lynx"):
        values = np.asarray(_aeon(name), dtype=np.float64).reshape(-1)
        if name == "airline":  # monthly totals from January 1949
            return pd.DataFrame({name: values}, index=pd.date_range("1949-01-01", periods=len(values), freq="MS")), 12
        return pd.DataFrame({name: values}, index=np.arange(1821, 1821 + len(values))), 10  # yearly from 1821
    near = _near(name, list(BUILTIN))
    raise UnknownSeriesError(f"unknown series {name!r}{near}; built in: {', '.join(BUILTIN)}, or csv with a path")


def _near(name: str, options: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_series(source: str, path: str | Path | None = None, columns: Sequence[str] = (),
                time_column: str | None = None, resample: str = "", period: int = 0) -> Series:
    """Load a built-in series or a user's CSV file.

    Args:
        source: a name from `builtin_series()`, or "csv" (then `path`).
        path: CSV with a header: a time column and one or more numeric value columns.
        columns: value columns to keep (default: all; for macrodata, realgdp).
        time_column: the CSV's time column (default: the first column).
        resample: a pandas frequency ("MS" month start, "W", "QS", "YS"): mean per period,
            empty periods missing. Needs datetime timestamps.
        period: seasonal period (0: the series' own; for a CSV with dates the calendar's: 12 monthly,
            4 quarterly, 52 weekly, 7 daily, 24 hourly; else 1).
    Returns: a `Series` (values (T, C) float64, NaN where missing).
    Raises: the `SeriesError` subclasses named in the module docstring.
    """
    import pandas as pd

    if source == "csv":
        if not path:
            raise SeriesError("source 'csv' needs a path to a CSV file")
        df, own_period = _read_csv(Path(path), time_column), 1
        name = Path(path).stem
    else:
        df, own_period = _load_builtin(source)
        name = source
        if source == "macrodata" and not columns:
            columns = ["realgdp"]
    if columns:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise UnknownSeriesError(f"{name}: no column {missing[0]!r}{_near(missing[0], list(df.columns))}; "
                                     f"columns: {', '.join(map(str, df.columns))}")
        df = df[list(columns)]
    if resample:
        if not isinstance(df.index, pd.DatetimeIndex):
            raise SeriesError(f"{name}: resample={resample!r} needs datetime timestamps, "
                              f"this series is indexed by {df.index.dtype}")
        df = df.resample(resample).mean()
        own_period = _PERIODS.get(resample.rstrip("SE")[:1].upper(), 1)
    if source == "csv" and not resample:
        own_period = _calendar_period(df.index)
    for col in df.columns:
        if df[col].isna().all():
            raise AllNaNColumnError(f"{name}: column {col!r} has no values (all missing)")
    values = df.to_numpy(dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    return Series(name=name, values=values, index=df.index.to_numpy(), columns=[str(c) for c in df.columns],
                  period=period or own_period)


_PERIODS = {"M": 12, "Q": 4, "W": 52, "D": 7, "H": 24}  # the season of a calendar frequency


def _calendar_period(index) -> int:
    """12 for monthly timestamps, 4 quarterly, 52 weekly, 7 daily, 24 hourly; 1 otherwise."""
    import pandas as pd

    if not isinstance(index, pd.DatetimeIndex) or len(index) < 3:
        return 1
    freq = pd.infer_freq(index[:min(len(index), 50)])
    return _PERIODS.get((freq or "").lstrip("0123456789")[:1].upper(), 1)


def _read_csv(path: Path, time_column: str | None):
    """A DataFrame indexed by sorted unique time, numeric columns; named errors otherwise."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise SeriesError(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise SeriesError(f"{path}: not a readable CSV file ({err})") from None
    if df.shape[1] < 2:
        raise SeriesError(f"{path}: expected a time column and at least one value column, "
                          f"found {df.shape[1]} column(s)")
    time_column = time_column or str(df.columns[0])
    if time_column not in df.columns:
        raise UnknownSeriesError(f"{path}: no time column {time_column!r}{_near(time_column, list(df.columns))}")
    raw_time = df[time_column]
    if pd.api.types.is_numeric_dtype(raw_time):
        time = raw_time.to_numpy()
    else:
        try:
            time = pd.to_datetime(raw_time).to_numpy()
        except (ValueError, TypeError) as err:
            raise SeriesError(f"{path}: time column {time_column!r} is neither numbers nor dates ({err})") from None
    df = df.drop(columns=time_column)
    for col in df.columns:
        if not pd.api.types.is_numeric_dtype(df[col]):
            as_num = pd.to_numeric(df[col], errors="coerce")
            bad = df[col][as_num.isna() & df[col].notna()]
            if len(bad):
                row = int(bad.index[0])
                raise NonNumericColumnError(f"{path}: column {col!r} is not numeric: row {row + 2} holds "
                                            f"{bad.iloc[0]!r}")
            df[col] = as_num
    steps = np.diff(time)
    zero = steps == np.zeros((), dtype=steps.dtype)
    if zero.any():
        i = int(np.argmax(zero)) + 1
        raise DuplicateTimestampsError(f"{path}: timestamp {raw_time.iloc[i]!r} appears twice "
                                       f"(rows {i + 1} and {i + 2})")
    back = steps < np.zeros((), dtype=steps.dtype)
    if back.any():
        i = int(np.argmax(back)) + 1
        raise UnsortedTimestampsError(f"{path}: timestamps are not sorted: {raw_time.iloc[i]!r} (row {i + 2}) "
                                      f"comes after {raw_time.iloc[i - 1]!r}; sort the file by time")
    df.index = pd.Index(time)
    return df


# ----------------------------------------------------------------------------- missing values

MISSING_POLICIES = ("interpolate", "drop", "error")


def fill_missing(values: np.ndarray, policy: str) -> np.ndarray:
    """Apply a missing-value policy to (T, C) values.

    interpolate: linear in time between the nearest observed values, the ends held
    at the first/last observed value; drop: values kept as NaN (windows that touch
    them are left out by `make_windows`); error: MissingValuesError if any is missing.
    """
    if policy not in MISSING_POLICIES:
        raise SeriesError(f"missing-value policy {policy!r}: expected one of {', '.join(MISSING_POLICIES)}")
    missing = np.isnan(values)
    if not missing.any() or policy == "drop":
        return values
    if policy == "error":
        t, c = np.argwhere(missing)[0]
        raise MissingValuesError(f"{int(missing.sum())} missing value(s), the first at step {int(t)} of column "
                                 f"{int(c)}; choose missing: interpolate or drop")
    out = values.copy()
    steps = np.arange(len(values))
    for c in range(values.shape[1]):
        seen = ~missing[:, c]
        if not seen.any():
            raise AllNaNColumnError(f"column {c} has no values (all missing)")
        out[~seen, c] = np.interp(steps[~seen], steps[seen], values[seen, c])
    return out


# ----------------------------------------------------------------------------- transforms


@dataclass
class SeriesTransform:
    """log or power → linear detrend → (1 − B)^d (1 − B^s)^D → standard scaling; each step optional.

    `fit` on the training part only; `forward` maps levels y (T, C) to z (T, C) with
    z[t] aligned to y[t] (NaN for the first d + D·s steps); `inverse` maps future z
    paths back to levels given the observed history. The trend uses the absolute
    time step t (0 = the first value of the series).
    """

    log: bool = False
    power: float = 1.0  # y -> y^power for 0 < power < 1 (0.5: square root), a variance-stabilising transform
    detrend: str = "none"  # none | linear
    difference: int = 0
    seasonal_difference: int = 0
    period: int = 1
    scale: str = "standard"  # standard | none
    trend: list = field(default_factory=list)  # per column [intercept, slope]
    mean: list = field(default_factory=list)
    std: list = field(default_factory=list)

    def __post_init__(self):
        if not 0 < self.power <= 1:
            raise SeriesError(f"power {self.power}: expected 0 < power <= 1 (0.5 is the square root)")
        if self.log and self.power != 1:
            raise SeriesError("choose log or power, not both")
        if self.detrend not in ("none", "linear"):
            raise SeriesError(f"detrend {self.detrend!r}: expected none or linear")
        if self.scale not in ("standard", "none"):
            raise SeriesError(f"scale {self.scale!r}: expected standard or none")
        if self.difference < 0 or self.seasonal_difference < 0:
            raise SeriesError("difference and seasonal_difference must be >= 0")
        if self.seasonal_difference and self.period < 2:
            raise SeriesError(f"seasonal_difference needs a period >= 2, got period {self.period}")

    @property
    def lag_polynomial(self) -> np.ndarray:
        """Coefficients c_0..c_m of (1 − B)^d (1 − B^s)^D, c_0 = 1."""
        poly = np.array([1.0])
        for _ in range(self.difference):
            poly = np.convolve(poly, [1.0, -1.0])
        for _ in range(self.seasonal_difference):
            seasonal = np.zeros(self.period + 1)
            seasonal[0], seasonal[-1] = 1.0, -1.0
            poly = np.convolve(poly, seasonal)
        return poly

    @property
    def lost_steps(self) -> int:
        """Leading steps without a z value: d + D·s."""
        return len(self.lag_polynomial) - 1

    @property
    def is_affine(self) -> bool:
        """True when levels are an affine function of z (no log): means and NLL map exactly."""
        return not self.log and self.power == 1

    def _pre(self, y: np.ndarray, t: np.ndarray) -> np.ndarray:
        """log and detrend: (T, C) levels at absolute steps t -> u."""
        u = self._power(y)
        if self.detrend == "linear":
            coef = np.asarray(self.trend)  # (C, 2)
            u = u - (coef[:, 0] + np.outer(t, coef[:, 1]))
        return u

    def _post(self, u: np.ndarray, t: np.ndarray) -> np.ndarray:
        if self.detrend == "linear":
            coef = np.asarray(self.trend)
            u = u + (coef[:, 0] + np.multiply.outer(t, coef[:, 1]))
        if self.log:
            return np.exp(u)
        if self.power != 1:  # a draw below zero is a zero of the (non-negative) series
            return np.maximum(u, 0) ** (1 / self.power)
        return u

    def _power(self, y: np.ndarray) -> np.ndarray:
        if self.log:
            return np.log(y)
        return y ** self.power if self.power != 1 else y

    def _difference(self, u: np.ndarray) -> np.ndarray:
        poly = self.lag_polynomial
        out = np.full_like(u, np.nan)
        m = len(poly) - 1
        if len(u) > m:
            out[m:] = sum(c * u[m - k:len(u) - k] for k, c in enumerate(poly))
        return out

    def fit(self, y: np.ndarray) -> "SeriesTransform":
        """Fit trend, mean and std on training levels y (T, C) (NaN ignored); returns self."""
        y = np.asarray(y, dtype=np.float64)
        if self.log and np.nanmin(y) <= 0:
            raise SeriesError(f"log transform needs positive values; the training part has {np.nanmin(y):g}")
        if self.power != 1 and np.nanmin(y) < 0:
            raise SeriesError(f"power transform needs values >= 0; the training part has {np.nanmin(y):g}")
        t = np.arange(len(y))
        u = self._power(y)
        if self.detrend == "linear":
            coef = []
            for c in range(y.shape[1]):
                ok = ~np.isnan(u[:, c])
                slope, intercept = np.polyfit(t[ok], u[ok, c], 1)
                coef.append([float(intercept), float(slope)])
            self.trend = coef
        w = self._difference(self._pre(y, t))
        if self.scale == "standard":
            mean, std = np.nanmean(w, axis=0), np.nanstd(w, axis=0)
            std = np.where(std > 0, std, 1.0)
            self.mean, self.std = mean.tolist(), std.tolist()
        else:
            self.mean, self.std = [0.0] * y.shape[1], [1.0] * y.shape[1]
        return self

    def forward(self, y: np.ndarray, start: int = 0) -> np.ndarray:
        """Levels y (T, C) whose first row is absolute step `start` -> z (T, C), NaN where undefined."""
        y = np.asarray(y, dtype=np.float64)
        t = np.arange(start, start + len(y))
        w = self._difference(self._pre(y, t))
        return (w - np.asarray(self.mean)) / np.asarray(self.std)

    def inverse(self, z: np.ndarray, history: np.ndarray, start: int) -> np.ndarray:
        """Future z paths (..., h, C) -> levels (..., h, C).

        history: observed levels (T0, C) just before the forecast, with at least d + D·s
        rows; the first forecast step is absolute step `start` (= its row count when
        the history starts at step 0). Linear in z when the transform is affine.
        """
        z = np.asarray(z, dtype=np.float64)
        h = z.shape[-2]
        w = z * np.asarray(self.std) + np.asarray(self.mean)
        poly = self.lag_polynomial
        m = len(poly) - 1
        if m:
            if len(history) < m:
                raise SeriesTooShortError(f"inverting the differences needs {m} past values, got {len(history)}")
            past = self._pre(np.asarray(history[len(history) - m:], dtype=np.float64), np.arange(start - m, start))
            u = np.empty(z.shape[:-2] + (m + h, z.shape[-1]))
            u[..., :m, :] = past
            for k in range(h):  # u_t = w_t − Σ_{j≥1} c_j u_{t−j}
                acc = w[..., k, :].copy()
                for j in range(1, m + 1):
                    if poly[j]:
                        acc -= poly[j] * u[..., m + k - j, :]
                u[..., m + k, :] = acc
            u = u[..., m:, :]
        else:
            u = w
        return self._post(u, np.arange(start, start + h))

    def level_log_jacobian(self, y: np.ndarray) -> np.ndarray:
        """log |dz/dy| per value (…, C) of one step whose other terms are known: p_y = p_z · |dz/dy|."""
        out = -np.log(np.asarray(self.std)) + np.zeros_like(y)
        if self.log:
            out = out - np.log(y)
        elif self.power != 1:  # d(y^p)/dy = p·y^(p−1)
            out = out + math.log(self.power) + (self.power - 1) * np.log(np.maximum(y, 1e-12))
        return out

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("log", "power", "detrend", "difference", "seasonal_difference", "period",
                                              "scale", "trend", "mean", "std")}

    @classmethod
    def from_dict(cls, data: dict) -> "SeriesTransform":
        return cls(**data)


# ----------------------------------------------------------------------------- splits and windows


@dataclass(frozen=True)
class TimeSplit:
    """Train [0, valid_start), validation [valid_start, test_start), test [test_start, length)."""

    length: int
    valid_start: int
    test_start: int

    @classmethod
    def make(cls, length: int, valid_size: float, test_size: float) -> "TimeSplit":
        """Sizes are counts when >= 1, fractions of the length when < 1."""
        def count(size):
            return int(size) if size >= 1 else int(round(size * length))

        test, valid = count(test_size), count(valid_size)
        if test + valid >= length:
            raise SeriesTooShortError(f"a series of {length} steps cannot hold {valid} validation and "
                                      f"{test} test steps and still have a training part")
        return cls(length, length - test - valid, length - test)

    def bounds(self, part: str) -> tuple[int, int]:
        """[first, end) of the steps whose values belong to `part` (train, valid, test)."""
        try:
            return {"train": (0, self.valid_start), "valid": (self.valid_start, self.test_start),
                    "test": (self.test_start, self.length)}[part]
        except KeyError:
            raise SeriesError(f"no split {part!r}: expected train, valid or test") from None

    def origins(self, part: str, window: int, horizon: int, stride: int = 1, first: int = 0) -> np.ndarray:
        """Forecast origins o (the last input step) whose targets o+1..o+horizon all lie in `part`.

        Inputs o−window+1..o must start at or after step `first` (the first defined z).
        Training origins step by `stride` counted back from the last one, so the newest
        data is always used; other parts use every origin.
        """
        check_window(window, horizon, stride)
        lo, hi = self.bounds(part)
        first_origin = max(lo - 1, first + window - 1)
        last_origin = hi - 1 - horizon
        if last_origin < first_origin:
            return np.zeros(0, dtype=np.int64)
        if part == "train":
            return np.arange(last_origin, first_origin - 1, -stride)[::-1].copy()
        return np.arange(first_origin, last_origin + 1)


def check_window(window: int, horizon: int, stride: int = 1) -> None:
    """BadHorizonError unless window, horizon and stride are integers >= 1."""
    for name, value in (("horizon", horizon), ("window", window), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise BadHorizonError(f"{name} must be an integer >= 1, got {value!r}")


def make_windows(z: np.ndarray, window: int, horizon: int, origins: np.ndarray,
                 features: np.ndarray | None = None, next_step: bool = False, drop_missing: bool = True):
    """Overlapping windows of a transformed series (the lectures' "3 values in, the next out").

    Args:
        z: (T, C) transformed values. window: L. horizon: h. origins: (M,) last input steps.
        features: optional (T, F) known covariates appended to the inputs (e.g. season).
        next_step: targets are the next value at every input position, (L, C) (recursive
            training) instead of the h values after the origin, (h, C) (direct).
        drop_missing: leave out windows with NaN anywhere (the `drop` policy).
    Returns: inputs (M', L, C+F), targets (M', h or L, C), kept origins (M',).
    """
    check_window(window, horizon)
    z = np.asarray(z, dtype=np.float64)
    if len(z) < window + horizon:
        raise SeriesTooShortError(f"a series of {len(z)} steps is shorter than window + horizon = "
                                  f"{window} + {horizon}")
    origins = np.asarray(origins, dtype=np.int64)
    x_cols = z if features is None else np.concatenate([z, features], axis=1)
    steps = origins[:, None] + np.arange(-window + 1, 1)[None]  # (M, L)
    inputs = x_cols[steps]  # (M, L, C+F)
    target_steps = steps + 1 if next_step else origins[:, None] + np.arange(1, horizon + 1)[None]
    targets = z[target_steps]  # (M, h or L, C)
    if drop_missing:
        ok = ~(np.isnan(inputs).any(axis=(1, 2)) | np.isnan(targets).any(axis=(1, 2)))
        inputs, targets, origins = inputs[ok], targets[ok], origins[ok]
    return inputs, targets, origins


def season_features(steps: np.ndarray, period: int) -> np.ndarray:
    """(T, 2) sin and cos of 2π·t/period: where in the season step t lies (known for future steps too)."""
    angle = 2 * math.pi * np.asarray(steps, dtype=np.float64) / max(period, 1)
    return np.stack([np.sin(angle), np.cos(angle)], axis=1)
