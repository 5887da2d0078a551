"""Baselines that rnnkit's models are measured against, on the same data and targets."""
from .forecast import BASELINES, arima, arima_search, ets, fit_mlp, naive, seasonal_naive, targets_at

__all__ = ["BASELINES", "naive", "seasonal_naive", "arima", "arima_search", "ets", "fit_mlp", "targets_at"]
