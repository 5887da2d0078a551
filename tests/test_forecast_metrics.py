"""Forecast metrics and the classical baselines, on hand-made numbers and simulated series."""
import math

import numpy as np
import pytest

from rnnkit.baselines import forecast as bl
from rnnkit.metrics.forecast import (Predictive, coverage, crps_gaussian, crps_samples, format_table, gaussian_nll,
                                     mae, mase, naive_scale, pinball, rmse, score, smape)


def test_point_metrics_on_hand_made_numbers():
    pred, y = np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 2.0])
    assert rmse(pred, y) == pytest.approx(math.sqrt(5 / 3))
    assert mae(pred, y) == pytest.approx(1.0)
    assert naive_scale(np.array([1.0, 3.0, 2.0, 6.0])) == pytest.approx(7 / 3)
    assert mase(pred, y, 0.5) == pytest.approx(2.0)
    assert smape(np.array([0.0, 2.0]), np.array([0.0, 1.0])) == pytest.approx(200 * (0 + 1 / 3) / 2)
    assert coverage([0, 0, 0], [1, 1, 1], [0.5, 1.0, 2.0]) == pytest.approx(2 / 3)
    assert pinball(np.array([1.0]), np.array([3.0]), 0.9) == pytest.approx(1.8)
    assert pinball(np.array([1.0]), np.array([0.0]), 0.9) == pytest.approx(0.1)


def test_crps_from_samples_approaches_the_gaussian_closed_form():
    rng = np.random.default_rng(0)
    mean, std, y = np.array([0.0, 1.0]), np.array([1.0, 2.0]), np.array([0.3, -2.0])
    samples = mean + std * rng.standard_normal((200000, 2))
    np.testing.assert_allclose(crps_samples(samples, y), crps_gaussian(mean, std, y), rtol=0.01)
    # a point forecast's CRPS is its absolute error
    np.testing.assert_allclose(crps_samples(np.full((5, 2), 1.0), np.array([3.0, 0.5])), [2.0, 0.5])
    assert gaussian_nll(0.0, 1.0, 0.0) == pytest.approx(0.5 * math.log(2 * math.pi))


def test_predictive_from_gaussian_gives_calibrated_intervals_and_a_table():
    rng = np.random.default_rng(1)
    y = rng.standard_normal(20000)
    pred = Predictive.from_gaussian("oracle", np.zeros_like(y), np.ones_like(y), y)
    row = score(pred, y, scale=1.0)
    assert row["cover80"] == pytest.approx(0.8, abs=0.01) and row["cover95"] == pytest.approx(0.95, abs=0.01)
    assert row["nll"] == pytest.approx(0.5 * math.log(2 * math.pi) + 0.5, abs=0.02)
    point = score(Predictive("point", np.zeros_like(y)), y, 1.0)
    assert math.isnan(point["nll"]) and math.isnan(point["cover80"])
    table = format_table({"oracle": row, "point": point}, "title", {"oracle": "N(0, 1)"})
    assert table.splitlines()[0] == "title" and "N(0, 1)" in table and "—" in table.splitlines()[-1]


def seasonal_series(n=160, period=4, seed=0):
    t = np.arange(n)
    noise = np.random.default_rng(seed).normal(0, 0.3, n)
    return (10 + 3 * np.sin(2 * np.pi * t / period) + noise)[:, None]


def test_naive_and_seasonal_naive_forecast_the_right_values():
    y = np.arange(40, dtype=float)[:, None]
    origins = np.array([29, 33])
    p = bl.naive(y, origins, 3, fit_end=30)
    np.testing.assert_array_equal(p.point[:, :, 0], [[29, 29, 29], [33, 33, 33]])
    assert p.lower[0.8].shape == (2, 3, 1) and np.all(np.diff(p.upper[0.8][0, :, 0]) > 0)  # widening with k
    s = bl.seasonal_naive(y, origins, 6, fit_end=30, period=4)
    np.testing.assert_array_equal(s.point[0, :, 0], [26, 27, 28, 29, 26, 27])  # one season back, then two
    per = seasonal_series()
    exact = bl.seasonal_naive(np.tile([[1.0], [5.0], [2.0], [7.0]], (20, 1)), np.arange(60, 75), 2, 60, 4)
    assert rmse(exact.point, bl.targets_at(np.tile([[1.0], [5.0], [2.0], [7.0]], (20, 1)), np.arange(60, 75), 2)) == 0
    assert per.shape == (160, 1)


def test_arima_finds_an_ar1_and_beats_naive_on_it():
    rng = np.random.default_rng(0)
    y = np.zeros(220)
    for t in range(1, 220):
        y[t] = 0.8 * y[t - 1] + rng.normal()
    y = y[:, None] + 50
    origins = np.arange(179, 219)
    arima = bl.arima(y, origins, 1, fit_end=180, valid_start=150, max_order=1, d=0)
    naive = bl.naive(y, origins, 1, 180)
    actual = bl.targets_at(y, origins, 1)
    assert "ARIMA(1,0," in arima.note
    assert rmse(arima.point, actual) < rmse(naive.point, actual)
    assert 0.6 <= score(arima, actual)["cover80"] <= 1.0
    res, order, _ = bl.arima_search(y[:180, 0], 0, max_order=1, search="stepwise")
    assert order[0] == 1


def test_ets_and_two_step_state_space_forecasts():
    y = seasonal_series(period=4)
    origins = np.arange(139, 158)
    p = bl.ets(y, origins, 2, fit_end=140, period=4)
    actual = bl.targets_at(y, origins, 2)
    assert p.point.shape == (19, 2, 1) and "ETS(A," in p.note and p.note.endswith("A) by AIC")  # seasonal
    assert rmse(p.point, actual) < rmse(bl.naive(y, origins, 2, 140).point, actual)


def test_mlp_baseline_learns_a_sine():
    t = np.arange(300)
    z = np.sin(2 * np.pi * t / 12)[:, None]
    from rnnkit.data.series import make_windows

    x, y, _ = make_windows(z, 12, 1, np.arange(11, 250))
    vx, vy, _ = make_windows(z, 12, 1, np.arange(250, 299))
    model = bl.fit_mlp((x, y), (vx, vy), hidden_size=16, epochs=40, seed=0)
    import torch

    with torch.no_grad():
        dist, _ = model(torch.as_tensor(vx, dtype=torch.float32))
    assert float(((dist.mean().numpy() - vy) ** 2).mean()) < 0.01
