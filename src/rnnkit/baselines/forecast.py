"""Forecast baselines scored on the same targets as the RNN: naive, seasonal naive, MLP, ARIMA, ETS.

Every baseline takes the observed levels y (T, C), the forecast origins o (M,) (the
last observed step of each forecast), the horizon h and `fit_end` (the first step
the baseline may not fit on: the start of the test part), and returns a
`rnnkit.metrics.forecast.Predictive` over the targets y[o+1 .. o+h] (M, h, C).
Parameters are fitted once on y[:fit_end]; forecasts from later origins condition on
the observed values up to the origin with those parameters (a rolling evaluation,
as statsmodels' `apply` does), never refitting on test data.

- naive: y[o]; Gaussian intervals with σ_k = σ√k, σ the in-sample RMS one-step change.
- seasonal naive: y[o + k − s·⌈k/s⌉]; σ_k = σ_s √⌈k/s⌉.
- arima: statsmodels SARIMAX; p, q (and seasonal P, Q ≤ 1 with D = 1) by AIC over a
  grid (or stepwise, Hyndman & Khandakar 2008), fitted on train + validation; the
  differencing order d is given, or chosen (0 or 1) by the one-step RMSE on the
  validation part of each d's AIC-best model fitted on the training part.
- ets: statsmodels' state-space exponential smoothing, trend none/additive/damped and
  additive season, chosen by AIC.
- mlp: `fit_mlp` trains `rnnkit.models.MLPForecaster` on the RNN's own windows;
  the task turns it into a Predictive exactly as it does the RNN.
"""
from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import torch

from ..metrics.forecast import Predictive
from ..models.forecaster import MLPForecaster

BASELINES = ("naive", "seasonal_naive", "mlp", "arima", "ets")
MAX_SEASONAL_PERIOD = 24  # seasonal ARIMA/ETS above this (weekly data, s = 52) is too slow to fit here


def targets_at(y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """y[o+1 .. o+h] for every origin: (M, h, C)."""
    return y[np.asarray(origins)[:, None] + np.arange(1, horizon + 1)[None]]


def _rms(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.nanmean(x ** 2, axis=0))


def naive(y: np.ndarray, origins: np.ndarray, horizon: int, fit_end: int) -> Predictive:
    """Last observed value; σ_k = σ√k from the in-sample one-step changes."""
    actual = targets_at(y, origins, horizon)
    point = np.repeat(y[origins][:, None], horizon, axis=1)  # (M, h, C)
    sigma = np.maximum(_rms(np.diff(y[:fit_end], axis=0)), 1e-12)  # (C,); floored: a constant series
    std = sigma * np.sqrt(np.arange(1, horizon + 1))[None, :, None]
    return Predictive.from_gaussian("naive", point, np.broadcast_to(std, point.shape), actual)


def seasonal_naive(y: np.ndarray, origins: np.ndarray, horizon: int, fit_end: int, period: int) -> Predictive:
    """The value one season before each target; σ_k = σ_s √⌈k/s⌉."""
    s = max(int(period), 1)
    actual = targets_at(y, origins, horizon)
    k = np.arange(1, horizon + 1)
    seasons = np.ceil(k / s).astype(int)
    point = y[np.asarray(origins)[:, None] + k[None] - s * seasons[None]]  # (M, h, C)
    sigma = np.maximum(_rms(y[s:fit_end] - y[:fit_end - s]), 1e-12)
    std = np.broadcast_to(sigma * np.sqrt(seasons)[None, :, None], point.shape)
    return Predictive.from_gaussian("seasonal_naive" if s > 1 else "seasonal_naive (s=1)", point, std, actual)


@contextlib.contextmanager
def _quiet_single_thread():
    """statsmodels' fits are tiny: one BLAS thread avoids the 10-50× slowdown of contended threads."""
    try:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl comes with the forecast extra
        limit = contextlib.nullcontext()
    with limit, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.showwarning = lambda *args, **kwargs: None  # statsmodels re-enables some categories inside
        yield


def _statespace_forecasts(result, y_col: np.ndarray, origins: np.ndarray, horizon: int):
    """Means and standard deviations (M, h) of a fitted state-space model applied to the whole series."""
    origins = np.asarray(origins)
    if horizon == 1:  # one filter pass gives every one-step-ahead prediction
        full = result.apply(y_col)
        pred = full.get_prediction(start=int(origins.min()) + 1, end=int(origins.max()) + 1)
        offset = origins - origins.min()
        mean = np.asarray(pred.predicted_mean)[offset][:, None]
        std = np.sqrt(np.asarray(pred.var_pred_mean))[offset][:, None]
        return mean, std
    means, stds = [], []
    for o in origins:
        fc = result.apply(y_col[:o + 1]).get_forecast(horizon)
        means.append(np.asarray(fc.predicted_mean))
        stds.append(np.sqrt(np.asarray(fc.var_pred_mean)))
    return np.stack(means), np.stack(stds)


def _arima_fit(y_col, order, seasonal_order):
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    trend = "c" if order[1] + seasonal_order[1] == 0 else "n"
    try:
        return SARIMAX(y_col, order=order, seasonal_order=seasonal_order, trend=trend).fit(disp=False)
    except (np.linalg.LinAlgError, ValueError):
        return None


def arima_search(y_col: np.ndarray, d: int, period: int = 1, seasonal: bool = True, max_order: int = 5,
                 search: str = "grid", max_fits: int = 40):
    """AIC search over ARIMA(p, d, q)(P, D, Q)_s: returns (result, order, seasonal_order).

    grid: every p, q <= max_order (<= 2 with a season) and P, Q <= 1.
    stepwise (Hyndman & Khandakar 2008): from (2,2)(1,1), (0,0)(0,0), (1,0)(1,0),
    (0,1)(0,1), move to the best neighbour (p, q, P, Q each ±1, p and q together ±1)
    while the AIC falls; at most `max_fits` fits.
    """
    with _quiet_single_thread():
        return _search(y_col, d, period, seasonal, max_order, search, max_fits)


def _search(y_col, d, period, seasonal, max_order, search, max_fits):
    use_season = seasonal and 1 < period <= MAX_SEASONAL_PERIOD
    D = 1 if use_season else 0

    def key_to_orders(key):
        p, q, P, Q = key
        return (p, d, q), ((P, D, Q, period) if use_season else (0, 0, 0, 0))

    fitted: dict = {}

    def fit(key):
        if key not in fitted:
            fitted[key] = _arima_fit(y_col, *key_to_orders(key))
        res = fitted[key]
        return math.inf if res is None or not np.isfinite(res.aic) else res.aic

    if search == "grid":
        top = min(max_order, 2) if use_season else max_order
        seasonal_terms = (0, 1) if use_season else (0,)
        keys = [(p, q, P, Q) for p in range(top + 1) for q in range(top + 1)
                for P in seasonal_terms for Q in seasonal_terms]
        best = min(keys, key=fit)
        return fitted[best], *key_to_orders(best)
    if search != "stepwise":
        raise ValueError(f"ARIMA search {search!r}: expected grid or stepwise")
    starts = [(2, 2, 1, 1), (0, 0, 0, 0), (1, 0, 1, 0), (0, 1, 0, 1)]
    if not use_season:
        starts = list(dict.fromkeys((p, q, 0, 0) for p, q, _, _ in starts))
    best = min(starts, key=fit)
    while len(fitted) < max_fits:
        p, q, P, Q = best
        steps = [(1, 0, 0, 0), (-1, 0, 0, 0), (0, 1, 0, 0), (0, -1, 0, 0), (1, 1, 0, 0), (-1, -1, 0, 0)]
        if use_season:
            steps += [(0, 0, 1, 0), (0, 0, -1, 0), (0, 0, 0, 1), (0, 0, 0, -1)]
        moves = [(p + a, q + b, P + c, Q + e) for a, b, c, e in steps]
        moves = [m for m in moves if 0 <= m[0] <= max_order and 0 <= m[1] <= max_order
                 and 0 <= m[2] <= 1 and 0 <= m[3] <= 1 and m not in fitted]
        if not moves:
            break
        candidate = min(moves, key=fit)
        if fit(candidate) >= fit(best):
            break
        best = candidate
    return fitted[best], *key_to_orders(best)


def arima(y: np.ndarray, origins: np.ndarray, horizon: int, fit_end: int, valid_start: int, period: int = 1,
          seasonal: bool = True, max_order: int = 5, d: int = -1, search: str = "grid") -> Predictive:
    """ARIMA by stepwise AIC (d by validation RMSE when d = −1), refitted on y[:fit_end]; see the module docstring."""
    actual = targets_at(y, origins, horizon)
    if fit_end - valid_start < 5:  # no validation part given: hold out the last tenth for choosing d
        valid_start = int(0.9 * fit_end)
    means, stds, names = [], [], []
    with _quiet_single_thread():
        for c in range(y.shape[1]):
            col = y[:, c]
            if d >= 0:
                choice = d
            else:  # pick d by one-step RMSE on the validation part, each d with its own AIC-best p, q
                scores = {}
                for cand in (0, 1):
                    res, order, sorder = arima_search(col[:valid_start], cand, period, seasonal, max_order, search)
                    mean, _ = _statespace_forecasts(res, col[:fit_end], np.arange(valid_start - 1, fit_end - 1), 1)
                    scores[cand] = float(np.sqrt(np.nanmean((mean[:, 0] - col[valid_start:fit_end]) ** 2)))
                choice = min(scores, key=scores.get)
            res, order, sorder = arima_search(col[:fit_end], choice, period, seasonal, max_order, search)
            mean, std = _statespace_forecasts(res, col, origins, horizon)
            means.append(mean)
            stds.append(std)
            names.append(f"({order[0]},{order[1]},{order[2]})" + (f"({sorder[0]},{sorder[1]},{sorder[2]}){sorder[3]}"
                                                                 if sorder[3] else ""))
    mean, std = np.stack(means, -1), np.stack(stds, -1)
    return Predictive.from_gaussian("arima", mean, std, actual, note="ARIMA" + ",".join(names) + " by AIC")


def ets(y: np.ndarray, origins: np.ndarray, horizon: int, fit_end: int, period: int = 1) -> Predictive:
    """Exponential smoothing (state space): trend none/additive/damped × additive season, by AIC."""
    from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

    actual = targets_at(y, origins, horizon)
    seasons = [None] + ([period] if 1 < period <= MAX_SEASONAL_PERIOD else [])
    means, stds, names = [], [], []
    with _quiet_single_thread():
        for c in range(y.shape[1]):
            col = y[:fit_end, c]
            best, best_aic, best_name = None, math.inf, ""
            for season in seasons:
                for trend, damped in ((False, False), (True, False), (True, True)):
                    try:
                        res = ExponentialSmoothing(col, trend=trend, damped_trend=damped,
                                                   seasonal=season).fit(disp=False)
                    except (np.linalg.LinAlgError, ValueError):
                        continue
                    if np.isfinite(res.aic) and res.aic < best_aic:
                        best, best_aic = res, res.aic
                        best_name = ("A" + ("d" if damped else "") if trend else "N") + ("A" if season else "N")
            mean, std = _statespace_forecasts(best, y[:, c], origins, horizon)
            means.append(mean)
            stds.append(std)
            names.append(best_name)
    return Predictive.from_gaussian("ets", np.stack(means, -1), np.stack(stds, -1), actual,
                                    note="ETS(A," + ",".join(names) + ") by AIC")


def fit_mlp(train: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray] | None, *,
            head: str = "gaussian",
            components: int = 3, hidden_size: int = 32, num_layers: int = 2, epochs: int = 300, lr: float = 3e-3,
            batch_size: int = 32, patience: int = 30, seed: int = 0) -> MLPForecaster:
    """Train the window MLP on (inputs (N, L, C+F), targets (N, h, C)); keep the best validation loss.

    Returns the model in eval mode. Deterministic for a seed (its own generator for shuffling).
    """
    x, y = (torch.as_tensor(a, dtype=torch.float32) for a in train)
    window, width = x.shape[1], x.shape[2]
    horizon, target_size = y.shape[1], y.shape[2]
    torch.manual_seed(seed)
    model = MLPForecaster(window, target_size, width - target_size, horizon, hidden_size=hidden_size,
                          num_layers=num_layers, head=head, components=components)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    vx, vy = (torch.as_tensor(a, dtype=torch.float32) for a in (valid or train))
    best, best_state, bad = math.inf, None, 0
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            dist, _ = model(x[idx])
            loss = model.loss(dist, y[idx])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
        model.eval()
        with torch.no_grad():
            value = float(model.loss(model(vx)[0], vy))
        if value < best:
            best, best_state, bad = value, {k: v.clone() for k, v in model.state_dict().items()}, 0
        else:
            bad += 1
            if patience and bad >= patience:
                break
    model.load_state_dict(best_state)
    return model.eval()
