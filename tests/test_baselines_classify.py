"""The summary-statistics classification baseline: its features, its fit, its errors."""
import numpy as np
import pytest

from rnnkit.baselines import fit_summary_logreg, summary_features


def test_summary_features_are_mean_std_ends_and_length():
    a = np.arange(10, dtype=np.float32).reshape(5, 2)  # steps 0..4, features (2t, 2t + 1)
    b = np.array([[1.0, -1.0]])  # one step: its ends are itself, no spread
    f = summary_features([a, b], ends=2)
    assert f.shape == (2, 4 * 2 + 1) and f.dtype == np.float64
    np.testing.assert_allclose(f[0], [4, 5, a[:, 0].std(), a[:, 1].std(), 1, 2, 7, 8, 5])
    np.testing.assert_allclose(f[1], [1, -1, 0, 0, 1, -1, 1, -1, 1])


def test_summary_features_refuse_empty_or_flat_series():
    with pytest.raises(ValueError, match="series 1: expected"):
        summary_features([np.zeros((3, 2)), np.zeros((0, 2))])
    with pytest.raises(ValueError, match="series 0: expected"):
        summary_features([np.zeros(4)])
    with pytest.raises(ValueError, match="ends"):
        summary_features([np.zeros((3, 2))], ends=0)


def test_the_baseline_learns_a_class_carried_by_the_series_ends_and_not_by_its_mean():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)

    def series(label, n):
        out = []
        for _ in range(n):
            s = rng.normal(0, 1, size=(int(rng.integers(6, 12)), 3))
            s[:3, 0] += 3.0 if label else -3.0  # the class: the first steps go up or down ...
            s[-3:, 0] -= 3.0 if label else -3.0  # ... and the last the other way, so the mean is alike
            out.append(s)
        return out

    train = series(0, 40) + series(1, 40)
    labels = np.repeat([0, 1], 40)
    model = fit_summary_logreg(train, labels)
    test = series(0, 50) + series(1, 50)
    accuracy = (model.predict(summary_features(test)) == np.repeat([0, 1], 50)).mean()
    assert accuracy > 0.95
    means_only = fit_summary_logreg([s.mean(0, keepdims=True) for s in train], labels)  # one step: no ends
    chance = (means_only.predict(summary_features([s.mean(0, keepdims=True) for s in test]))
              == np.repeat([0, 1], 50)).mean()
    assert chance < 0.75  # the mean alone does not carry it
