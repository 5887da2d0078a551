"""A classification baseline without recurrence: per-series summary statistics and a
linear classifier (scikit-learn's multinomial logistic regression).

Each series (L, D) becomes one vector of 4D + 1 numbers: the mean and the standard
deviation of every feature over its steps, the mean of its first `ends` steps and of
its last `ends` steps (all of it when shorter), and its length. The vectors are
standardised on the training series and classified by an L2-regularised logistic
regression. It knows nothing of order inside a series beyond its two ends, so what an
RNN scores above it is what reading the series step by step adds.
"""
from __future__ import annotations

import numpy as np


def summary_features(sequences, ends: int = 3) -> np.ndarray:
    """(N, 4D + 1): mean, standard deviation, mean of the first and of the last `ends`
    steps, and the length of each (L_i, D) series."""
    if ends < 1:
        raise ValueError(f"ends must be at least 1, got {ends}")
    rows = []
    for i, s in enumerate(sequences):
        s = np.asarray(s, dtype=np.float64)
        if s.ndim != 2 or len(s) == 0:
            raise ValueError(f"series {i}: expected (steps ≥ 1, features), got shape {s.shape}")
        rows.append(np.concatenate([s.mean(0), s.std(0), s[:ends].mean(0), s[-ends:].mean(0), [len(s)]]))
    return np.stack(rows)


def fit_summary_logreg(sequences, labels, C: float = 1.0, ends: int = 3):
    """A fitted scikit-learn pipeline (standardise, logistic regression) on `summary_features`;
    classify new series with `.predict(summary_features(them, ends))`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=10_000))
    return model.fit(summary_features(sequences, ends), np.asarray(labels))
