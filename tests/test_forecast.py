"""The `forecast` task end to end through the `rnnkit` command (train, eval, sample), the forecaster's
multi-step modes, level-space NLL, and bad input."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from toytask import one_thread_fixture  # noqa: E402

from rnnkit.cli import load_run, main  # noqa: E402
from rnnkit.models.forecaster import Forecaster, rollout  # noqa: E402

_one_thread = one_thread_fixture()


def series_csv(tmp_path, n=240, name="monthly.csv"):
    """A trending seasonal monthly series: 10 + 0.05 t + 3 sin(2πt/12) + N(0, 0.3²)."""
    t = np.arange(n)
    values = 10 + 0.05 * t + 3 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(0).normal(0, 0.3, n)
    dates = np.datetime64("2000-01", "M") + t
    path = tmp_path / name
    path.write_text("month,value\n" + "".join(f"{d}-01,{v:.4f}\n" for d, v in zip(dates, values)))
    return path


def recipe(tmp_path, csv, data=None, model=None, trainer=None, name="r.yaml"):
    config = {
        "task": "forecast",
        "data": {"source": "csv", "path": str(csv), "window": 12, "valid_size": 24, "test_size": 24,
                 "difference": 1, "batch_size": 16, "samples": 200, "baselines": ["naive", "seasonal_naive", "mlp"],
                 "mlp_epochs": 30, **(data or {})},
        "model": {"cell": "lstm", "hidden_size": 16, **(model or {})},
        "optim": {"name": "adam", "lr": 0.01},
        "trainer": {"max_epochs": 8, "clip_norm": 5.0, **(trainer or {})},
        "run": {"dir": str(tmp_path / "run"), "seed": 0, "device": "cpu", "tensorboard": False},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("forecast")
    csv = series_csv(tmp_path)
    assert main(["train", recipe(tmp_path, csv)]) == 0
    return tmp_path / "run", csv


def test_eval_prints_every_method_on_the_same_test_targets(trained, capsys):
    run, _ = trained
    assert main(["eval", str(run), "--split", "test", "--plot", str(run / "test.png")]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line and not line.startswith("#")}
    assert lines["method"][1:] == ["rmse", "mae", "mase", "smape", "nll", "crps", "cover80", "cover95"]
    for name in ("rnn", "naive", "seasonal_naive", "mlp"):
        assert name in lines
    assert "24 origins x 1 step(s) on the test part (2018-01-01 .. 2019-12-01)" in out
    rnn, naive = float(lines["rnn"][1]), float(lines["naive"][1])
    assert rnn < naive  # the seasonal pattern is learnt: better than the last value
    assert lines["rnn"][7].endswith("%") and (run / "test.png").stat().st_size > 10_000


def test_scaler_is_fitted_on_the_training_part_and_stored(trained):
    run, csv = trained
    assets = json.loads((run / "scaler.json").read_text())
    values = np.loadtxt(csv, delimiter=",", skiprows=1, usecols=1)
    train = values[:240 - 48]
    diffs = np.diff(train)
    assert assets["transform"]["difference"] == 1
    assert assets["transform"]["mean"][0] == pytest.approx(diffs.mean())
    assert assets["transform"]["std"][0] == pytest.approx(diffs.std())
    assert (run / "best" / "scaler.json").exists()


def test_holdback_backtests_as_if_the_series_ended_earlier(tmp_path, capsys):
    csv = series_csv(tmp_path)
    r = recipe(tmp_path, csv, data={"holdback": 24, "baselines": ["naive"]}, trainer={"max_epochs": 0, "max_steps": 2})
    assert main(["train", r]) == 0
    assets = json.loads((tmp_path / "run" / "scaler.json").read_text())
    values = np.loadtxt(csv, delimiter=",", skiprows=1, usecols=1)
    assert assets["transform"]["mean"][0] == pytest.approx(np.diff(values[:240 - 24 - 48]).mean())
    assert main(["eval", str(tmp_path / "run"), "--split", "test"]) == 0
    assert "24 origins x 1 step(s) on the test part (2016-01-01 .. 2017-12-01)" in capsys.readouterr().out
    assert main(["train", r, "data.holdback=240", "run.overwrite=true"]) == 2
    assert "data.holdback = 240: expected fewer than the series' 240 steps" in capsys.readouterr().err


def test_sample_forecasts_beyond_the_end_with_intervals_and_a_fan_chart(trained, capsys, tmp_path):
    run, _ = trained
    png = tmp_path / "fan.png"
    assert main(["sample", str(run), "--horizon", "6", "--plot", str(png), "--csv", str(tmp_path / "f.csv")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "time,value_mean,value_lo80,value_hi80,value_lo95,value_hi95"
    assert len(out) == 7 and out[1].startswith("2020-01-01,")
    row = [float(v) for v in out[1].split(",")[1:]]
    assert row[3] < row[1] < row[0] < row[2] < row[4]  # mean, lo80, hi80, lo95, hi95: 95% outside 80%
    assert png.stat().st_size > 10_000 and (tmp_path / "f.csv").read_text().splitlines() == out
    assert main(["sample", str(run), "--horizon", "4", "--at", "-10", "--samples", "50"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("2019-03-01,")


def test_forecast_command_is_sample_under_its_own_name(trained, capsys, tmp_path):
    run, _ = trained
    png = tmp_path / "fan.png"
    assert main(["sample", str(run), "--horizon", "5", "--seed", "3"]) == 0
    sampled = capsys.readouterr().out
    assert main(["forecast", str(run), "--horizon", "5", "--seed", "3", "--plot", str(png)]) == 0
    assert capsys.readouterr().out == sampled and png.stat().st_size > 10_000


def test_forecast_command_refuses_a_run_of_another_task(tmp_path, capsys):
    import yaml

    from rnnkit.config import build_config, to_dict
    from rnnkit.train.checkpoint import STATE_FILE

    config = build_config({"task": "charlm", "data": {"source": "path", "path": str(tmp_path)}})
    best = tmp_path / "run" / "best"
    best.mkdir(parents=True)
    (best / "config.yaml").write_text(yaml.safe_dump(to_dict(config)))
    (best / STATE_FILE).write_text("{}")
    run = tmp_path / "run"
    assert main(["forecast", str(run)]) == 2
    assert "'charlm' run; rnnkit forecast needs a forecast run" in capsys.readouterr().err


def test_level_nll_is_the_scaled_nll_plus_log_scale(trained):
    """No differencing: p_y(y) = p_z(z)/σ, so NLL_y = NLL_z + log σ (the change of variables)."""
    run, _ = trained
    task, model, _, _ = load_run(run)
    task.prepare_data()
    inputs, targets, origins = task.windows("test")
    pred = task.predictive(model, inputs, origins, 1, 100)
    with torch.no_grad():
        dist, _ = model(torch.as_tensor(inputs, dtype=torch.float32))
    nll_z = -dist.log_prob(torch.as_tensor(targets, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(pred.nll, nll_z + math.log(task.data.transform.std[0]), rtol=1e-5)
    actual = task.data.y[origins + 1]
    assert pred.point.shape == (24, 1, 1) and np.isfinite(pred.crps).all()
    assert abs(float(np.mean(pred.point[:, 0] - actual))) < 2  # levels, not differences


@pytest.mark.parametrize("model,data", [
    ({"multi_step": "recursive", "head": "mixture", "components": 2}, {"season_features": True, "horizon": 3}),
    ({"multi_step": "recursive", "feed": "mean", "cell": "gru"}, {"difference": 0, "detrend": "linear"}),
    ({"head": "point", "ensemble": 2}, {"seasonal_difference": 1, "horizon": 2, "missing": "drop"}),
    ({"ensemble": 2, "head": "mixture"}, {"log": True, "horizon": 2, "season_features": True}),
    ({"cell": "gru", "skip": 3, "multi_step": "recursive"}, {"difference": 1, "season_features": True}),
])
def test_every_head_and_multi_step_mode_trains_evaluates_and_samples(tmp_path, capsys, model, data):
    csv = series_csv(tmp_path, n=150)
    r = recipe(tmp_path, csv, data={"baselines": ["naive"], "valid_size": 20, "test_size": 20, **data},
               model=model, trainer={"max_epochs": 0, "max_steps": 6})
    assert main(["train", r]) == 0
    assert main(["eval", str(tmp_path / "run"), "--split", "test", "--samples", "50"]) == 0
    out = capsys.readouterr().out
    rnn = next(line for line in out.splitlines() if line.startswith("rnn"))
    assert "nan" not in rnn
    if model.get("head") == "point":
        assert rnn.split()[5] == "—"  # no NLL for a point forecast
    assert main(["sample", str(tmp_path / "run"), "--horizon", "5", "--samples", "40"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 6


def test_recursive_forecast_with_the_mean_fed_back_equals_a_step_loop():
    torch.manual_seed(0)
    model = Forecaster(1, 0, 1, hidden_size=8, multi_step="recursive").eval()
    x = torch.randn(3, 7, 1)
    mean, _, dist = model.forecast(x, 4, feed="mean")
    member = model.members[0]
    out, state = member.rnn(x)
    h, values = out[:, -1], []
    for _ in range(4):
        y = member.head(h).mean()[:, 0]  # (N, C)
        values.append(y)
        h, state = member.rnn.step(y, state)
    torch.testing.assert_close(mean, torch.stack(values, 1))
    assert dist.mean().shape == (3, 4, 1)
    direct = Forecaster(1, 0, 2, hidden_size=8).eval()
    m, s, d = rollout(direct, x, 5, 30)  # beyond its 2 steps: the window slides over its own paths
    assert m.shape == (3, 5, 1) and s.shape == (30, 3, 5, 1) and d.mean().shape == (3, 2, 1)


def _silence_rnn_means(model):
    """Zero the head's mean outputs so that the mean is the AR term alone."""
    for m in model.members:
        per = m.head.per_component
        with torch.no_grad():
            w = m.head.proj.weight.view(m.head.steps, m.head.components, per, -1)
            b = m.head.proj.bias.view(m.head.steps, m.head.components, per)
            w[:, :, 1:1 + m.head.dim] = 0
            b[:, :, 1:1 + m.head.dim] = 0
            m.ar.weight.normal_()
            m.ar.bias.normal_()


def test_ar_order_adds_a_linear_autoregression_on_the_last_values_to_the_mean():
    torch.manual_seed(0)
    x = torch.randn(4, 9, 2 + 2)  # C = 2 targets, F = 2 covariates
    direct = Forecaster(2, 2, 3, hidden_size=6, head="mixture", components=2, ar_order=5).eval()
    _silence_rnn_means(direct)
    dist, _ = direct(x)
    ar = direct.members[0].ar
    expected = torch.einsum("sp,npc->nsc", ar.weight, x[:, -5:, :2]) + ar.bias[None, :, None]  # (N, S, C)
    torch.testing.assert_close(dist.means, expected.unsqueeze(-2).expand_as(dist.means))
    # recursive: every position t regresses on the values at t-4 .. t (zeros before the window)
    rec = Forecaster(2, 2, 1, hidden_size=6, multi_step="recursive", ar_order=5).eval()
    _silence_rnn_means(rec)
    dist, _ = rec(x)
    ar = rec.members[0].ar
    padded = torch.cat([torch.zeros(4, 4, 2), x[..., :2]], 1)
    for t in range(9):
        want = padded[:, t:t + 5].transpose(1, 2) @ ar.weight[0] + ar.bias[0]  # (N, C)
        torch.testing.assert_close(dist.means[:, t, 0], want)
    # a window shorter than p is padded with zeros in direct mode too
    short, _ = direct(x[:, -3:])
    want = torch.einsum("sp,npc->nsc", direct.members[0].ar.weight[:, 2:], x[:, -3:, :2])
    torch.testing.assert_close(short.means[:, :, 0], want + direct.members[0].ar.bias[None, :, None])


def test_ar_order_recursive_forecast_feeds_its_own_values_into_the_lags():
    torch.manual_seed(1)
    model = Forecaster(1, 0, 1, hidden_size=8, multi_step="recursive", ar_order=3).eval()
    for p in model.members[0].ar.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(3, 7, 1)
    mean, _, _ = model.forecast(x, 4, feed="mean")
    seq = x
    for k in range(4):  # teacher forcing on the extended sequence gives the same next mean
        dist, _ = model(seq)
        torch.testing.assert_close(mean[:, k], dist.mean()[:, -1])
        seq = torch.cat([seq, mean[:, k:k + 1]], 1)
    _, samples, _ = model.forecast(x, 4, num_samples=20, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (20, 3, 4, 1) and torch.isfinite(samples).all()


def test_skip_through_time_reaches_back_a_season_in_both_modes():
    torch.manual_seed(3)
    x = torch.randn(3, 14, 1 + 2)
    model = Forecaster(1, 2, 1, cell="gru", hidden_size=6, multi_step="recursive", skip=4).eval()
    member = model.members[0]
    assert member.rnn.skip == 4
    with torch.no_grad():
        member.rnn.skip_weights[0].normal_(std=0.5)
    future = torch.randn(3, 5, 2)
    mean, _, _ = model.forecast(x, 5, feed="mean", future_features=future)
    seq = x
    for k in range(5):  # the carried state holds h[t-4] .. h[t-2]: same as teacher forcing on the extension
        dist, _ = model(seq)
        torch.testing.assert_close(mean[:, k], dist.mean()[:, -1])
        seq = torch.cat([seq, torch.cat([mean[:, k:k + 1], future[:, k:k + 1]], -1)], 1)
    g = torch.Generator().manual_seed(0)
    _, samples, _ = model.forecast(x, 5, num_samples=8, future_features=future, generator=g)
    assert samples.shape == (8, 3, 5, 1) and torch.isfinite(samples).all()
    direct = Forecaster(1, 2, 2, hidden_size=6, skip=4).eval()
    before, _ = direct(x)
    with torch.no_grad():
        direct.members[0].rnn.skip_weights[0].normal_(std=0.5)
    after, _ = direct(x)
    assert not torch.allclose(before.mean(), after.mean())  # the skip weights take part in the forecast


def test_ar_order_starts_as_the_plain_rnn_and_trains(tmp_path, capsys):
    torch.manual_seed(2)
    x = torch.randn(2, 6, 1)
    plain, with_ar = Forecaster(1, 0, 2, hidden_size=5), Forecaster(1, 0, 2, hidden_size=5, ar_order=4)
    with_ar.load_state_dict(plain.state_dict(), strict=False)
    torch.testing.assert_close(plain(x)[0].means, with_ar(x)[0].means)
    csv = series_csv(tmp_path, n=150)
    r = recipe(tmp_path, csv, data={"baselines": ["naive"], "valid_size": 20, "test_size": 20},
               model={"ar_order": 6, "ensemble": 2}, trainer={"max_epochs": 0, "max_steps": 6})
    assert main(["train", r]) == 0
    assert main(["eval", str(tmp_path / "run"), "--split", "test", "--samples", "50"]) == 0
    out = capsys.readouterr().out
    assert "AR(6)" in out and "nan" not in next(line for line in out.splitlines() if line.startswith("rnn"))


def write(tmp_path, text):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize("override,words", [
    ("data.horizon=0", "data.horizon = 0: expected an integer >= 1"),
    ("data.window=500", "SeriesTooShortError"),
    ("data.source=sunspot", "did you mean 'sunspots'"),
    ("model.head=laplace", "model.head = 'laplace'"),
    ("data.baselines=[arma]", "data.baselines = 'arma'"),
    ("model.ar_order=500", "model.ar_order = 500: expected at most data.window"),
])
def test_bad_configuration_stops_before_training(tmp_path, capsys, override, words):
    r = recipe(tmp_path, series_csv(tmp_path, n=100))
    assert main(["train", r, override]) == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize("text,words", [
    ("t,v\n3,1\n1,2\n2,3\n", "UnsortedTimestampsError"),
    ("t,v\n1,1\n2,2\n2,3\n", "DuplicateTimestampsError"),
    ("t,v\n1,1\n2,x\n3,3\n", "NonNumericColumnError"),
    ("t,v,w\n1,1,\n2,2,\n", "AllNaNColumnError"),
])
def test_bad_csv_stops_with_the_named_error(tmp_path, capsys, text, words):
    r = recipe(tmp_path, write(tmp_path, text))
    assert main(["train", r]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: data.source=csv: ") and words in err


def test_missing_values_policy_error_names_the_step(tmp_path, capsys):
    lines = "".join(f"{i},{'' if i == 30 else i}\n" for i in range(100))
    r = recipe(tmp_path, write(tmp_path, "t,v\n" + lines), data={"missing": "error"})
    assert main(["train", r]) == 2
    assert "MissingValuesError: 1 missing value(s), the first at step 30" in capsys.readouterr().err
