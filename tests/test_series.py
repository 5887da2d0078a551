"""Time series data: windows, splits by time, transforms fitted on the training part, missing values, CSV errors."""
import numpy as np
import pytest

from rnnkit.data.series import (AllNaNColumnError, BadHorizonError, DuplicateTimestampsError, MissingValuesError,
                                NonNumericColumnError, SeriesError, SeriesTooShortError, SeriesTransform, TimeSplit,
                                UnknownSeriesError, UnsortedTimestampsError, fill_missing, load_series, make_windows,
                                season_features)


def test_windows_are_the_lectures_three_in_one_out():
    z = np.arange(10, dtype=float)[:, None]  # temperatures 0..9
    x, y, o = make_windows(z, window=3, horizon=1, origins=np.arange(2, 9))
    assert x.shape == (7, 3, 1) and y.shape == (7, 1, 1)
    assert x[0, :, 0].tolist() == [0, 1, 2] and y[0, 0, 0] == 3
    assert x[-1, :, 0].tolist() == [6, 7, 8] and y[-1, 0, 0] == 9
    x, y, _ = make_windows(z, window=3, horizon=2, origins=np.array([4]))
    assert x[0, :, 0].tolist() == [2, 3, 4] and y[0, :, 0].tolist() == [5, 6]
    x, y, _ = make_windows(z, window=3, horizon=1, origins=np.array([4]), next_step=True)
    assert y[0, :, 0].tolist() == [3, 4, 5]  # the next value at every position (recursive training)
    feats = season_features(np.arange(10), 4)
    x, _, _ = make_windows(z, 3, 1, np.array([4]), features=feats)
    assert x.shape == (1, 3, 3) and np.allclose(x[0, :, 1:], feats[2:5])


def test_split_is_by_time_and_targets_never_cross_it():
    split = TimeSplit.make(100, valid_size=0.1, test_size=20)
    assert (split.valid_start, split.test_start) == (70, 80)
    for h in (1, 3):
        train = split.origins("train", window=5, horizon=h, stride=1)
        valid = split.origins("valid", 5, h)
        test = split.origins("test", 5, h)
        assert (train + h).max() < 70 and train.min() == 4  # the first full window
        assert valid.min() + 1 == 70 and (valid + h).max() < 80
        assert test.min() + 1 == 80 and test.max() + h == 99
        assert len(test) == 20 - h + 1
    strided = split.origins("train", 5, 1, stride=4)
    assert strided[-1] == 68 and np.all(np.diff(strided) == 4)  # the newest window is always kept
    assert split.origins("train", 5, 1, first=13).min() == 17  # differencing loses the first 13 steps
    with pytest.raises(SeriesTooShortError):
        TimeSplit.make(30, valid_size=10, test_size=20)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_horizon_window_and_stride_must_be_positive_integers(bad):
    with pytest.raises(BadHorizonError, match="horizon"):
        make_windows(np.zeros((50, 1)), window=3, horizon=bad, origins=np.array([5]))
    with pytest.raises(BadHorizonError, match="stride"):
        TimeSplit.make(50, 5, 5).origins("train", 3, 1, stride=bad)


def test_series_shorter_than_window_plus_horizon_is_a_named_error():
    with pytest.raises(SeriesTooShortError, match="shorter than window"):
        make_windows(np.zeros((5, 1)), window=4, horizon=2, origins=np.array([3]))


def test_transform_statistics_come_from_the_training_part_only():
    rng = np.random.default_rng(0)
    y = rng.normal(10, 2, (200, 1))
    y[150:] += 100  # a test part far from the training values must not move the scaler
    tr = SeriesTransform().fit(y[:100])
    assert np.isclose(tr.mean[0], y[:100].mean()) and np.isclose(tr.std[0], y[:100].std())
    z = tr.forward(y)
    assert abs(z[:100].mean()) < 1e-12 and z[150:].mean() > 40


@pytest.mark.parametrize("options", [
    dict(difference=1), dict(difference=2), dict(seasonal_difference=1, period=4),
    dict(difference=1, seasonal_difference=1, period=4), dict(detrend="linear"), dict(log=True, difference=1),
    dict(log=True, detrend="linear", seasonal_difference=1, period=4, scale="none")])
def test_inverse_transform_recovers_the_levels(options):
    t = np.arange(120)
    y = (50 + 0.5 * t + 5 * np.sin(2 * np.pi * t / 4) + np.random.default_rng(1).normal(0, 1, 120))[:, None]
    tr = SeriesTransform(**options).fit(y[:80])
    z = tr.forward(y)
    assert np.isnan(z[:tr.lost_steps]).all() and not np.isnan(z[tr.lost_steps:]).any()
    origin = 90
    back = tr.inverse(z[origin + 1:origin + 11], y[:origin + 1], origin + 1)  # 10 future steps from their z
    np.testing.assert_allclose(back, y[origin + 1:origin + 11], rtol=1e-10)
    paths = np.stack([z[origin + 1:origin + 6]] * 3)  # (S, h, C): sample paths invert together
    np.testing.assert_allclose(tr.inverse(paths, y[:origin + 1], origin + 1)[2], y[origin + 1:origin + 6])
    again = SeriesTransform.from_dict(tr.to_dict())
    np.testing.assert_allclose(again.forward(y), z)


def test_trend_is_extrapolated_when_detrending():
    t = np.arange(100.0)
    y = (3 + 2 * t)[:, None]
    tr = SeriesTransform(detrend="linear", scale="none").fit(y[:60])
    z_future = np.zeros((10, 1))  # "no deviation from the trend"
    np.testing.assert_allclose(tr.inverse(z_future, y[:80], 80), y[80:90])


def test_missing_value_policies():
    y = np.array([[1.0], [np.nan], [3.0], [np.nan], [np.nan], [6.0], [np.nan]])
    filled = fill_missing(y, "interpolate")
    np.testing.assert_allclose(filled[:, 0], [1, 2, 3, 4, 5, 6, 6])
    assert np.isnan(fill_missing(y, "drop")).sum() == 4
    with pytest.raises(MissingValuesError, match="4 missing value"):
        fill_missing(y, "error")
    with pytest.raises(SeriesError, match="policy"):
        fill_missing(y, "zero")
    z = np.arange(20, dtype=float)[:, None]
    z[10] = np.nan
    x, _, origins = make_windows(z, 3, 1, np.arange(2, 19))
    assert not np.isnan(x).any() and set(origins).isdisjoint({9, 10, 11, 12})  # every window touching step 10 dropped


def write(tmp_path, text, name="s.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_user_csv_loads_times_and_value_columns(tmp_path):
    path = write(tmp_path, "date,a,b\n2020-01-01,1,10\n2020-02-01,2,\n2020-03-01,3,30\n")
    s = load_series("csv", path)
    assert s.columns == ["a", "b"] and s.values.shape == (3, 2) and np.isnan(s.values[1, 1])
    assert np.issubdtype(s.index.dtype, np.datetime64) and s.period == 12  # monthly dates: a 12-step season
    only = load_series("csv", path, columns=["b"])
    assert only.columns == ["b"]
    monthly = load_series("csv", write(tmp_path, "t,v\n2020-01-05,1\n2020-01-20,3\n2020-03-02,5\n"), resample="MS")
    np.testing.assert_allclose(monthly.values[:, 0], [2, np.nan, 5])
    assert monthly.period == 12


@pytest.mark.parametrize("text,error,words", [
    ("t,v\n3,1\n1,2\n2,3\n", UnsortedTimestampsError, "not sorted"),
    ("t,v\n1,1\n2,2\n2,3\n", DuplicateTimestampsError, "appears twice"),
    ("t,v\n1,1\n2,abc\n3,3\n", NonNumericColumnError, "'abc'"),
    ("t,v,w\n1,1,\n2,2,\n", AllNaNColumnError, "'w'"),
    ("t\n1\n2\n", SeriesError, "value column"),
])
def test_bad_csv_input_raises_named_errors(tmp_path, text, error, words):
    with pytest.raises(error, match=words):
        load_series("csv", write(tmp_path, text))


def test_unknown_names_and_columns(tmp_path):
    with pytest.raises(UnknownSeriesError, match="did you mean 'sunspots'"):
        load_series("sunspot")
    with pytest.raises(UnknownSeriesError, match="no column 'realgpd'.*did you mean 'realgdp'"):
        load_series("macrodata", columns=["realgpd"])
    with pytest.raises(SeriesError, match="no such file"):
        load_series("csv", tmp_path / "absent.csv")


def test_builtin_series_load_offline():
    pytest.importorskip("statsmodels")
    sun = load_series("sunspots")
    assert sun.values.shape == (309, 1) and sun.index[0] == 1700 and sun.period == 11
    co2 = load_series("co2")
    assert co2.values.shape == (2284, 1) and np.isnan(co2.values).sum() == 59
    monthly = load_series("co2", resample="MS")
    assert len(monthly) == 526 and monthly.period == 12
    assert load_series("nile").values.shape == (100, 1)
    assert load_series("elnino").values.shape == (732, 1)
    macro = load_series("macrodata", columns=["realgdp", "unemp"])
    assert macro.values.shape == (203, 2) and macro.period == 4


def test_aeon_series_load_when_aeon_is_installed():
    pytest.importorskip("aeon")
    air = load_series("airline")
    assert air.values.shape == (144, 1) and air.values[0, 0] == 112 and air.period == 12
    assert load_series("lynx").values.shape == (114, 1)
