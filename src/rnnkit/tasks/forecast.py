"""`forecast`: real time series forecast with uncertainty, next to classical baselines.

    rnnkit train configs/forecast-sunspots.yaml
    rnnkit eval runs/forecast-sunspots --split test        # RNN vs naive, seasonal naive, MLP, ARIMA, ETS
    rnnkit forecast runs/forecast-sunspots --horizon 20 --plot fan.png

Data (`rnnkit.data.series`): a built-in series (sunspots, co2, nile, elnino,
macrodata, airline, lynx) or a CSV; a missing-value policy; a split by time into
train / validation / test; transforms (log, linear detrending, differencing,
scaling) fitted on the training part only and stored in the run as scaler.json;
overlapping windows of `data.window` steps with `data.horizon` targets.
Model (`rnnkit.models.Forecaster`): any rnnkit cell over the window, then a point,
Gaussian or mixture density head; direct (all h steps at once) or recursive
(next step at every position; forecasts feed samples or the mean back).
Training loss: NLL (probabilistic heads) or MSE/MAE (point head) in the scaled space.
Evaluation (`rnnkit eval`): forecasts from every origin of the split, turned back into
the series' units, scored by RMSE, MAE, MASE, sMAPE, NLL, CRPS and 80%/95% interval
coverage, next to each baseline scored on exactly the same targets.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..baselines import forecast as baselines
from ..cells import cell_names
from ..config import ConfigError, Section, option
from ..data.series import (BUILTIN, SeriesError, SeriesTransform, TimeSplit, check_window, fill_missing,
                           load_series, make_windows, season_features)
from ..metrics.forecast import Predictive, format_table, naive_scale, score
from ..models.forecaster import Forecaster, forecast_loss, rollout, select_steps
from ..models.mdn import Mixture
from .base import Batch, LossOutput, Task, TaskCommandError, epoch_generator, cell_options, check_cell
from .registry import register_task

SCALER_FILE = "scaler.json"


@dataclass(frozen=True)
class ForecastData(Section):
    """The series, its split, transforms and windows; and what `rnnkit eval` compares against."""

    source: str = option("sunspots", help="built-in series (" + ", ".join(BUILTIN) + ") or csv (with data.path)")
    path: str = option("", help="source=csv: a CSV file with a time column and value columns")
    time_column: str = option("", help="source=csv: the time column ('' the first column)")
    columns: list[str] = option(default_factory=list, help="value columns to model ([] all; macrodata: realgdp)")
    resample: str = option("", help="pandas frequency to average into, e.g. MS (monthly) for co2 ('' none)")
    period: int = option(0, ge=0, help="seasonal period (0: the series' own: 12 monthly, 4 quarterly, ...)")
    missing: Literal["interpolate", "drop", "error"] = option(
        "interpolate", help="missing values: interpolate linearly, drop the windows that touch them, or error")
    window: int = option(20, ge=1, help="L, input steps per window")
    horizon: int = option(1, ge=1, help="h, steps forecast from each origin (and scored)")
    stride: int = option(1, ge=1, help="steps between training windows")
    valid_size: float = option(0.1, ge=0, help="validation part before test: a count (>= 1) or a fraction; "
                                                "0: none (train a fixed number of epochs, keep the last)")
    test_size: float = option(0.1, gt=0, help="test part at the end: a count (>= 1) or a fraction")
    holdback: int = option(0, ge=0, help="leave out the last N steps entirely: a backtest as if the series ended "
                                         "N steps earlier (to choose a recipe without touching the test part)")
    log: bool = option(False, help="model log values (positive series)")
    power: float = option(1.0, gt=0, le=1, help="model y^power (0.5: square root, for counts; 1: off)")
    detrend: Literal["none", "linear"] = option("none", help="subtract a linear trend fitted on the training part")
    difference: int = option(0, ge=0, le=2, help="d, differences (1 - B)^d: lets the RNN follow a trend")
    seasonal_difference: int = option(0, ge=0, le=1, help="D, seasonal differences (1 - B^period)^D")
    scale: Literal["standard", "none"] = option("standard", help="standardise with training mean and std")
    season_features: bool = option(False, help="add sin/cos of the position in the season to the inputs")
    batch_size: int = option(32, ge=1, help="windows per batch")
    samples: int = option(1000, ge=10, help="sample paths per origin for intervals and CRPS at evaluation")
    baselines: list[str] = option(default_factory=lambda: list(baselines.BASELINES),
                                  help="baselines scored by rnnkit eval: " + ", ".join(baselines.BASELINES))
    arima_max_order: int = option(5, ge=0, help="largest p and q in the ARIMA search")
    arima_seasonal: bool = option(True, help="seasonal ARIMA (P, Q <= 1, D = 1) when 1 < period <= 24")
    arima_d: int = option(-1, ge=-1, le=2, help="ARIMA differencing order (-1: 0 or 1 by validation RMSE)")
    arima_search: Literal["grid", "stepwise"] = option("grid", help="ARIMA order search by AIC: full grid or stepwise")
    mlp_hidden_size: int = option(32, ge=1, help="the MLP baseline's hidden units (two tanh layers)")
    mlp_epochs: int = option(300, ge=1, help="the MLP baseline's epochs (best validation loss kept)")

    def check(self):
        if self.source != "csv" and self.source not in BUILTIN:
            import difflib

            near = difflib.get_close_matches(self.source, list(BUILTIN) + ["csv"], n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError("source", self.source, "csv or a built-in series: " + ", ".join(BUILTIN) + hint)
        if self.source == "csv" and not self.path:
            raise ConfigError("path", self.path, "a CSV file when source is csv")
        for name in self.baselines:
            if name not in baselines.BASELINES:
                raise ConfigError("baselines", name, "names among " + ", ".join(baselines.BASELINES))


@dataclass(frozen=True)
class ForecastModel(Section):
    """Recurrent encoder over the window → point / Gaussian / mixture density head."""

    cell: str = option("lstm", help="rnnkit cell: " + ", ".join(cell_names()))
    variant: str = option("", help="cell variant ('' the default)")
    nonlinearity: str = option("", help="rnn cell: tanh or relu ('' the default)")
    hidden_size: int = option(32, ge=1, help="H")
    num_layers: int = option(1, ge=1, help="stacked recurrent layers")
    skip: int = option(0, ge=0, help="skip connection through time from h[t-skip], e.g. the season's period "
                                     "(LSTNet's recurrent-skip; 0: off)")
    dropout: float = option(0.0, ge=0, lt=1, help="dropout between layers and before the head")
    head: Literal["point", "gaussian", "mixture"] = option("gaussian", help="output distribution")
    components: int = option(3, ge=1, help="mixture: K components")
    point_loss: Literal["mse", "mae"] = option("mse", help="point head: training loss")
    multi_step: Literal["direct", "recursive"] = option(
        "direct", help="direct: h steps from the last state; recursive: next step, fed back")
    feed: Literal["sample", "mean"] = option("sample", help="recursive: feed a draw per sample path, or the mean")
    ensemble: int = option(1, ge=1, help="E independently initialised members; the forecast is their mixture")
    ar_order: int = option(0, ge=0, help="p > 0: add a linear AR(p) on the last p values to the predicted mean "
                                         "(LSTNet's highway; at most data.window)")

    def check(self):
        check_cell(self.cell)


class _Data:
    """Everything prepare_data builds: levels, transformed values, split, windows."""

    def __init__(self, series, y, z, features, split, transform, first):
        self.series, self.y, self.z, self.features = series, y, z, features
        self.split, self.transform, self.first = split, transform, first


@register_task("forecast")
class Forecast(Task):
    """Time series forecasting (see the module docstring)."""

    DataConfig = ForecastData
    ModelConfig = ForecastModel
    unit = "win"

    def __init__(self, config):
        super().__init__(config)
        self.assets: dict | None = None  # scaler.json: transform, columns, period
        self.data: _Data | None = None
        self._model = None
        self._windows: dict = {}

    # -- data ----------------------------------------------------------------------------
    def prepare_data(self) -> None:
        d = self.data_config
        try:
            series = load_series(d.source, d.path or None, d.columns, d.time_column or None, d.resample, d.period)
            if d.holdback:
                if d.holdback >= len(series):
                    raise ConfigError("data.holdback", d.holdback, f"fewer than the series' {len(series)} steps")
                series = replace(series, values=series.values[:-d.holdback],
                                  index=series.index[:-d.holdback])
            y = fill_missing(series.values, d.missing)
            split = TimeSplit.make(len(y), d.valid_size, d.test_size)
            if self.assets is None:
                transform = SeriesTransform(log=d.log, power=d.power, detrend=d.detrend, difference=d.difference,
                                            seasonal_difference=d.seasonal_difference, period=series.period,
                                            scale=d.scale).fit(y[:split.valid_start])
                self.assets = {"transform": transform.to_dict(), "columns": series.columns, "period": series.period,
                               "features": 2 if d.season_features else 0, "series": series.name}
            transform = SeriesTransform.from_dict(self.assets["transform"])
        except SeriesError as err:
            raise ConfigError(f"data.{'path' if d.source == 'csv' else 'source'}",
                              message=f"data.source={d.source}: {type(err).__name__}: {err}") from None
        if series.columns != self.assets["columns"]:
            raise ConfigError("data.columns", series.columns, f"the run's columns {self.assets['columns']}")
        z = transform.forward(y)  # (T, C)
        features = season_features(np.arange(len(y)), series.period) if d.season_features else None
        self.data = _Data(series, y, z, features, split, transform, transform.lost_steps)
        self._windows = {}
        for part in ("train", "valid"):
            inputs, _, _ = self.windows(part)
            if part == "train" and len(inputs) == 0:
                raise ConfigError("data.window", d.window, message=(
                    f"data.window = {d.window}: SeriesTooShortError: the training part ({split.valid_start} steps, "
                    f"{self.data.first} lost to differencing) holds no window of {d.window} + horizon {d.horizon}"))

    def windows(self, part: str, horizon: int | None = None, training_form: bool = True):
        """(inputs (M, L, C+F), targets, origins (M,)) of a part; cached.

        Training windows of a recursive model target the next value at every position
        (M, L, C); all others the h values after the origin (M, h, C).
        """
        d, data = self.data_config, self.data
        horizon = horizon or d.horizon
        recursive = self.model_config.multi_step == "recursive" and training_form
        key = (part, horizon, recursive)
        if key not in self._windows:
            h = 1 if recursive else horizon
            origins = data.split.origins(part, d.window, h, d.stride if part == "train" else 1, data.first)
            if len(origins) == 0:
                out = (np.zeros((0, d.window, data.z.shape[1] + self.feature_size)),
                       np.zeros((0, d.window if recursive and part == "train" else h, data.z.shape[1])),
                       origins)
            else:
                out = make_windows(data.z, d.window, h, origins, data.features,
                                   next_step=recursive and part == "train", drop_missing=True)
            self._windows[key] = out
        return self._windows[key]

    @property
    def feature_size(self) -> int:
        return self.assets["features"]

    def save_assets(self, directory: Path) -> None:
        import json

        (Path(directory) / SCALER_FILE).write_text(json.dumps(self.assets, indent=1))

    def load_assets(self, directory: Path) -> None:
        import json

        path = Path(directory) / SCALER_FILE
        if not path.exists():
            raise TaskCommandError(f"{directory}: no {SCALER_FILE}; this is not a forecast run")
        self.assets = json.loads(path.read_text())

    # -- model ---------------------------------------------------------------------------
    def build_model(self) -> Forecaster:
        m, d = self.model_config, self.data_config
        if m.ar_order > d.window:
            raise ConfigError("model.ar_order", m.ar_order,
                              f"at most data.window ({d.window}): the lags come from the window")
        model = Forecaster(len(self.assets["columns"]), self.feature_size, d.horizon, cell=m.cell,
                           hidden_size=m.hidden_size, num_layers=m.num_layers, dropout=m.dropout, head=m.head,
                           components=m.components, point_loss=m.point_loss, multi_step=m.multi_step,
                           ensemble=m.ensemble, ar_order=m.ar_order, skip=m.skip, **cell_options(m))
        self._model = model
        return model

    # -- batches -------------------------------------------------------------------------
    def _batches(self, part: str, generator: torch.Generator | None = None) -> list[Batch]:
        x, y, _ = self.windows(part)
        if len(x) == 0:
            return []
        x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
        order = torch.randperm(len(x), generator=generator) if generator is not None else torch.arange(len(x))
        return [Batch(inputs=x[i], targets=y[i], size=len(i)) for i in order.split(self.data_config.batch_size)]

    def train_batches(self, epoch: int) -> list[Batch]:
        return self._batches("train", epoch_generator(self.config.run.seed, epoch))

    def valid_batches(self) -> list[Batch]:
        return self._batches("valid")

    def eval_batches(self, split: str) -> list[Batch]:
        if split not in ("train", "valid", "test"):
            raise TaskCommandError(f"task 'forecast' has no split {split!r} (it has: train, valid, test)")
        return self._batches(split)

    def compute_loss(self, model, batch: Batch, state) -> LossOutput:
        dist, _ = model(batch.inputs)  # batch (N, h) direct, (N, L) recursive
        y = batch.targets  # (N, h or L or 1, C)
        if dist.mean().shape[1] != y.shape[1]:  # recursive model scored on the step after the window
            dist = select_steps(dist, slice(-y.shape[1], None))
        loss = forecast_loss(dist, y)
        mse = ((dist.mean() - y) ** 2).mean()
        return LossOutput(loss, {"mse_scaled": mse.detach()}, None)

    def summarize(self, metrics: dict[str, float]) -> dict[str, float]:
        if "mse_scaled" in metrics:
            metrics = {**metrics, "rmse_scaled": math.sqrt(metrics["mse_scaled"])}
        return metrics

    # -- forecasts in the series' units --------------------------------------------------
    def _future_features(self, origins: np.ndarray, steps: int) -> torch.Tensor | None:
        if not self.feature_size:
            return None
        at = np.asarray(origins)[:, None] + np.arange(1, steps + 1)[None]  # (M, steps)
        feats = season_features(at.reshape(-1), self.assets["period"]).reshape(at.shape + (-1,))
        return torch.as_tensor(feats, dtype=torch.float32)

    def predictive(self, model, inputs: np.ndarray, origins: np.ndarray, horizon: int, num_samples: int,
                   seed: int = 0, name: str = "rnn", actual: np.ndarray | None = None,
                   scored: bool = True) -> Predictive:
        """A model's forecasts from `origins`, in the series' units, as a Predictive.

        inputs (M, L, C+F) windows ending at the origins. The point forecast is the
        predictive mean (exact through the affine inverse transform; the sample mean
        after a log); intervals and CRPS from `num_samples` sample paths; NLL in the
        series' units where it has a closed form: the first step, or every step when
        no differencing links them (the change of variables adds log σ_scale, and log y
        after a log transform). `actual` (M, h, C) defaults to the observed values;
        scored=False (forecasts past the end) leaves CRPS and NLL out.
        """
        data, transform = self.data, self.data.transform
        device = next(model.parameters()).device
        x = torch.as_tensor(inputs, dtype=torch.float32, device=device)
        block = getattr(model, "horizon", 1)
        future = self._future_features(origins, block * math.ceil(horizon / block))
        future = future.to(device) if future is not None else None
        point_head = getattr(model, "head_kind", "gaussian") == "point"
        S = 0 if point_head else num_samples
        gen = torch.Generator(device=device).manual_seed(seed)
        feed = self.model_config.feed
        mean_z, samples_z, dist = rollout(model, x, horizon, S, future, feed, gen)
        mean_z = mean_z.double().cpu().numpy()
        if actual is None and scored:
            actual = data.y[np.asarray(origins)[:, None] + np.arange(1, horizon + 1)[None]]
        point = np.stack([transform.inverse(mean_z[m], data.y[:o + 1], o + 1) for m, o in enumerate(origins)])
        if samples_z is None:
            return Predictive(name, point)
        samples_z = samples_z.double().cpu().numpy()  # (S, M, h, C)
        levels = np.stack([transform.inverse(samples_z[:, m], data.y[:o + 1], o + 1) for m, o in enumerate(origins)],
                          axis=1)  # (S, M, h, C)
        if not transform.is_affine:
            point = levels.mean(0)
        if not scored:
            return Predictive.from_samples(name, levels, None, point=point)
        nll = self._level_nll(model, x, dist, origins, horizon, actual)
        return Predictive.from_samples(name, levels, actual, point=point, nll=nll)

    def _level_nll(self, model, x, dist, origins, horizon, actual) -> np.ndarray | None:
        """NLL per value (nats) in the series' units where closed-form; None for point heads."""
        transform, z = self.data.transform, self.data.z
        if dist is None or getattr(model, "multi_step", "direct") == "recursive":
            with torch.no_grad():
                full, _ = model(x)
            dist = select_steps(full, slice(-1, None) if getattr(model, "multi_step", "") == "recursive"
                                else slice(0, 1))
        if not isinstance(dist, Mixture):
            return None
        steps = dist.mean().shape[1] if transform.lost_steps == 0 else 1
        steps = min(steps, horizon)
        at = np.asarray(origins)[:, None] + np.arange(1, steps + 1)[None]  # (M, k)
        z_true = torch.as_tensor(z[at], dtype=dist.means.dtype, device=dist.means.device)  # (M, k, C)
        with torch.no_grad():
            logp = select_steps(dist, slice(0, steps)).log_prob(z_true).double().cpu().numpy()  # (M, k)
        jac = transform.level_log_jacobian(actual[:, :steps]).sum(-1)  # (M, k): log |dz/dy|
        return -(logp + jac) / actual.shape[-1]

    def evaluate_all(self, model, part: str = "test", horizon: int | None = None, methods=None,
                     num_samples: int | None = None, seed: int = 0, log=None):
        """Score the model and each baseline on the same targets of `part`.

        Returns (rows {name: metrics}, predictives {name: Predictive}, origins, actual (M, h, C)).
        """
        d, data = self.data_config, self.data
        horizon = horizon or d.horizon
        check_window(d.window, horizon)
        methods = d.baselines if methods is None else methods
        num_samples = num_samples or d.samples
        inputs, _, origins = self.windows(part, horizon, training_form=False)
        if len(origins) == 0:
            hint = " (this run has no validation part: use --split test)" if part == "valid" else ""
            raise TaskCommandError(f"the {part} part has no forecast origin with {horizon} target step(s){hint}")
        y, split = data.y, data.split
        actual = baselines.targets_at(y, origins, horizon)
        scale = float(np.nanmean([naive_scale(y[:split.valid_start, c]) for c in range(y.shape[1])]))
        preds = {}
        was_training = model.training
        model.eval()
        preds["rnn"] = self.predictive(model, inputs, origins, horizon, num_samples, seed, actual=actual)
        model.train(was_training)
        fit_end = split.test_start if part == "test" else split.valid_start
        for name in methods:
            if log:
                log(f"baseline {name} ...")
            if name == "naive":
                preds[name] = baselines.naive(y, origins, horizon, fit_end)
            elif name == "seasonal_naive":
                preds[name] = baselines.seasonal_naive(y, origins, horizon, fit_end, self.assets["period"])
            elif name == "arima":
                preds[name] = baselines.arima(y, origins, horizon, fit_end, min(split.valid_start, fit_end),
                                              self.assets["period"], d.arima_seasonal, d.arima_max_order, d.arima_d,
                                              d.arima_search)
            elif name == "ets":
                preds[name] = baselines.ets(y, origins, horizon, fit_end, self.assets["period"])
            elif name == "mlp":
                mlp = self._fit_mlp(horizon, seed)
                preds[name] = self.predictive(mlp, inputs, origins, horizon, num_samples, seed, name="mlp",
                                              actual=actual)
        rows = {name: score(p, actual, scale) for name, p in preds.items()}
        return rows, preds, origins, actual

    def _fit_mlp(self, horizon: int, seed: int):
        d, m = self.data_config, self.model_config
        train = self.windows("train", horizon, training_form=False)[:2]
        valid = self.windows("valid", horizon, training_form=False)[:2]
        if len(valid[0]) == 0:  # no validation part: stop on the last tenth of the training windows
            cut = int(0.9 * len(train[0]))
            train, valid = (train[0][:cut], train[1][:cut]), (train[0][cut:], train[1][cut:])
        return baselines.fit_mlp(train, valid, head=m.head, components=m.components,
                                 hidden_size=d.mlp_hidden_size, epochs=d.mlp_epochs, seed=seed)

    def describe_model(self) -> str:
        m, d = self.model_config, self.data_config
        parts = [(f"{m.ensemble}x " if m.ensemble > 1 else "") + f"{m.cell}-{m.hidden_size}"
                 + (f"x{m.num_layers}" if m.num_layers > 1 else "") + (f" skip {m.skip}" if m.skip else ""), m.head
                 + (f"(K={m.components})" if m.head == "mixture" else ""), m.multi_step, f"window {d.window}"]
        if m.ar_order:
            parts.insert(1, f"+ AR({m.ar_order})")
        tr = [name for name, on in (("log", d.log), (f"y^{d.power:g}", d.power != 1),
                                    (f"detrend {d.detrend}", d.detrend != "none"),
                                    (f"d={d.difference}", d.difference),
                                    (f"D={d.seasonal_difference}", d.seasonal_difference)) if on]
        return ", ".join(parts + tr)

    # -- command line --------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, command: str, parser) -> None:
        if command == "eval":
            parser.add_argument("--horizon", type=_positive, default=None,
                                help="steps from each origin (default: the run's data.horizon)")
            parser.add_argument("--baselines", default=None,
                                help="comma-separated baselines (" + ",".join(baselines.BASELINES)
                                     + "), or none (default: the run's data.baselines)")
            parser.add_argument("--samples", type=_positive, default=None, help="sample paths per origin")
            parser.add_argument("--seed", type=int, default=0, help="seed of the sample paths and the MLP")
            parser.add_argument("--plot", default=None, metavar="PNG", help="draw the forecasts over the split")
        elif command == "sample":
            parser.add_argument("--horizon", type=_positive, default=20, help="steps to forecast (default 20)")
            parser.add_argument("--at", type=int, default=None, metavar="STEP",
                                help="forecast origin: the last observed step (0-based; negative counts back from "
                                     "the end, -40: hold out the last 40) instead of the end; draws what happened")
            parser.add_argument("--samples", type=_positive, default=None, help="sample paths")
            parser.add_argument("--seed", type=int, default=0, help="seed of the sample paths")
            parser.add_argument("--plot", default=None, metavar="PNG", help="fan chart: history, forecast, intervals")
            parser.add_argument("--history", type=_positive, default=None,
                                help="history steps shown in the plot (default: 3 × horizon, at least 60)")
            parser.add_argument("--csv", default=None, metavar="PATH", help="write the forecast table to PATH")

    def report(self, metrics: dict[str, float], args) -> None:
        if self.data is None:
            self.prepare_data()
        split = getattr(args, "split", "test")
        print(f"scaled-space loss {metrics.get('loss', float('nan')):.4f}, rmse_scaled "
              f"{metrics.get('rmse_scaled', float('nan')):.4f}")
        chosen = getattr(args, "baselines", None)
        methods = None if chosen is None else [b for b in chosen.split(",") if b and b != "none"]
        for b in methods or []:
            if b not in baselines.BASELINES:
                raise TaskCommandError(f"--baselines: unknown baseline {b!r} (known: {', '.join(baselines.BASELINES)})")
        horizon = getattr(args, "horizon", None) or self.data_config.horizon
        rows, preds, origins, actual = self.evaluate_all(self._model, split, horizon, methods,
                                                         getattr(args, "samples", None), getattr(args, "seed", 0))
        index = self.data.series.index
        span = f"{_label(index[origins[0] + 1])} .. {_label(index[origins[-1] + horizon])}"
        print(format_table(rows, f"# {self.data.series.name}: {len(origins)} origins x {horizon} step(s) on the "
                                 f"{split} part ({span}); rnn = {self.describe_model()}",
                           {n: p.note for n, p in preds.items()}))
        if getattr(args, "plot", None):
            p = preds["rnn"]
            k = 0  # the first step of every origin: one line through the split
            t = np.asarray(origins) + 1
            lo, hi = origins[0] - 3 * len(origins), origins[-1] + 1
            plot_fan(args.plot, index[max(lo, 0):hi], self.data.y[max(lo, 0):hi, 0], index[t], p.point[:, k, 0],
                     {lv: (p.lower[lv][:, k, 0], p.upper[lv][:, k, 0]) for lv in p.lower},
                     actual=(index[t], actual[:, k, 0]),
                     others={n: q.point[:, k, 0] for n, q in preds.items() if n in ("arima",)},
                     title=f"{self.data.series.name}: {horizon}-step forecasts over the {split} part "
                           f"({_label(index[t[0]])} onwards), step 1 shown", ylabel=self.assets["columns"][0])
            print(f"wrote {args.plot}")

    def sample(self, model, args) -> None:
        """`rnnkit forecast` (or `sample`) `RUN_DIR --horizon H [--plot PNG]`: forecast past the end or --at."""
        self.prepare_data()
        d, data = self.data_config, self.data
        T = len(data.y)
        origin = T - 1 if args.at is None else (T - 1 + args.at if args.at < 0 else args.at)
        if not data.first + d.window - 1 <= origin <= T - 1:
            raise TaskCommandError(f"--at {args.at}: the forecast origin must leave a full window of {d.window} "
                                   f"steps before it and lie inside the series ({T} steps)")
        if self.model_config.multi_step == "direct" and self.model_config.head != "point" and args.horizon > d.horizon:
            print(f"# note: this model predicts {d.horizon} step(s) at once; longer forecasts slide the window "
                  "over its own sample paths", file=sys.stderr)
        z = data.z
        x = z[origin - d.window + 1:origin + 1]
        if data.features is not None:
            x = np.concatenate([x, data.features[origin - d.window + 1:origin + 1]], 1)
        if np.isnan(x).any():
            raise TaskCommandError(f"the window before step {origin} has missing values (missing: drop); "
                                   "choose another --at")
        known = max(0, min(args.horizon, T - 1 - origin))
        p = self.predictive(model, x[None], np.array([origin]), args.horizon, args.samples or d.samples, args.seed,
                            scored=False)
        index = _extend_index(data.series.index[:origin + 1], args.horizon)
        future = index[origin + 1:]
        columns = self.assets["columns"]
        rows = ["time," + ",".join(f"{c}_{s}" for c in columns for s in
                                   (["mean"] + [f"{b}{int(lv * 100)}" for lv in p.lower for b in ("lo", "hi")]))]
        for k in range(args.horizon):
            vals = []
            for c in range(len(columns)):
                vals.append(p.point[0, k, c])
                for lv in p.lower:
                    vals += [p.lower[lv][0, k, c], p.upper[lv][0, k, c]]
            rows.append(f"{_label(future[k])}," + ",".join(f"{v:.6g}" for v in vals))
        text = "\n".join(rows) + "\n"
        sys.stdout.write(text)
        if args.csv:
            Path(args.csv).write_text(text)
        if args.plot:
            shown = args.history or max(60, 3 * args.horizon)
            lo = max(0, origin + 1 - shown)
            plot_fan(args.plot, index[lo:origin + 1], data.y[lo:origin + 1, 0], future, p.point[0, :, 0],
                     {lv: (p.lower[lv][0, :, 0], p.upper[lv][0, :, 0]) for lv in p.lower},
                     actual=(future[:known], data.y[origin + 1:origin + 1 + known, 0]) if known else None,
                     title=f"{data.series.name}: {args.horizon}-step forecast from {_label(index[origin])} "
                           f"({self.describe_model()})", ylabel=columns[0])
            print(f"wrote {args.plot}", file=sys.stderr)


# -- helpers ------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value} (BadHorizonError)")
    return value


def _label(t) -> str:
    if isinstance(t, np.datetime64):
        return str(t.astype("datetime64[D]"))
    if isinstance(t, (float, np.floating)) and float(t).is_integer():
        return str(int(t))
    return str(t)


def _extend_index(index: np.ndarray, steps: int) -> np.ndarray:
    """The index followed by `steps` more at its last spacing (calendar months when monthly)."""
    index = np.asarray(index)
    if np.issubdtype(index.dtype, np.datetime64):
        import pandas as pd

        freq = pd.infer_freq(pd.DatetimeIndex(index[-min(len(index), 24):])) if len(index) >= 3 else None
        if freq:
            more = pd.date_range(index[-1], periods=steps + 1, freq=freq)[1:].to_numpy()
            return np.concatenate([index, more.astype(index.dtype)])
    step = index[-1] - index[-2] if len(index) > 1 else 1
    return np.concatenate([index, index[-1] + step * np.arange(1, steps + 1)])


def plot_fan(path, hist_t, hist_y, t, point, bands: dict, actual=None, others=None, title="", ylabel=""):
    """A fan chart: history, the forecast, shaded central intervals (widest palest), actual values if known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(hist_t, hist_y, color="0.25", lw=1.2, label="history")
    for lv in sorted(bands, reverse=True):
        lo, hi = bands[lv]
        ax.fill_between(t, lo, hi, color="tab:blue", alpha=0.18 if lv > 0.9 else 0.35, lw=0,
                        label=f"{int(round(lv * 100))}% interval")
    ax.plot(t, point, color="tab:blue", lw=1.8, label="forecast (mean)")
    for name, values in (others or {}).items():
        ax.plot(t, values, color="tab:orange", lw=1.0, ls="--", label=name)
    if actual is not None:
        ax.plot(actual[0], actual[1], "o", color="black", ms=3, label="actual")
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
