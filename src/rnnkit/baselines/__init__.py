"""Baselines that rnnkit's models are measured against, on the same data and targets."""
from .classify import fit_summary_logreg, summary_features
from .forecast import BASELINES, arima, arima_search, ets, fit_mlp, naive, seasonal_naive, targets_at

__all__ = ["BASELINES", "naive", "seasonal_naive", "arima", "arima_search", "ets", "fit_mlp", "targets_at",
           "summary_features", "fit_summary_logreg"]
