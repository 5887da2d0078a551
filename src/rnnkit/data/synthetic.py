"""Synthetic sequence tasks, generated from a seed: the long-term-dependency tests of the lectures.

Every generator takes a `numpy.random.Generator`, a count and the lengths, and
returns a `SequenceSet` (rnnkit.data.sequences): a list of (L_i, D) float32
feature arrays and their targets. The same seed gives the same data on every
machine (numpy's PCG64).

| name | inputs (per step) | target | chance level |
|---|---|---|---|
| `parity` | one bit | classify: XOR of all bits; tag: XOR of the bits so far (the running parity) | 50% |
| `adding` | (value ~ U(0,1), marker in {0,1}) | the sum of the two marked values (regression) | MSE 0.167 predicting 1 |
| `larger` | (a_t, b_t), both ~ U(0,1) | 1 if the sum of a is larger than the sum of b, else 0 | 50% |
| `copy` | one-hot over K symbols + blank + go | the S symbols, recalled after a delay of T blanks | 1/K per recalled symbol |
| `order` | one-hot over V tokens | 1 if token A comes before token B (each appears once) | 50% |

Adding problem (Hochreiter & Schmidhuber 1997, in the form of Le et al. 2015 and
Arjovsky et al. 2016): one marked step falls uniformly in the first half of the
sequence and one in the second half, so the two numbers to add lie about T/2 steps
apart and the first one must be held across at least that many steps. Always
answering 1 (the mean of the sum) scores the variance of the sum, 2/12 ≈ 0.167.

Copy with a delay (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016): S symbols
drawn from K, then T blanks, then a `go` marker followed by S - 1 more blanks during
which the model must reproduce the S symbols in order. The targets of every other
step are IGNORE (-100), so the loss and accuracy count only the recalled symbols.

Order (the lectures' "I got in the car and ..." versus its shuffle): the label is the
order of two tokens, which no bag of steps and no window shorter than their distance
can see.
"""
from __future__ import annotations

import numpy as np

from .sequences import IGNORE, SequenceSet

SYNTHETIC = ("parity", "adding", "larger", "copy", "order")
"""Names of the synthetic sources."""

ADDING_BASELINE_MSE = 2.0 / 12.0
"""Test MSE of always predicting 1 on the adding problem: Var(U1 + U2) = 2/12."""


def _lengths(rng: np.random.Generator, count: int, length: int, min_length: int) -> np.ndarray:
    """(count,) lengths: all `length`, or uniform in min_length..length when 0 < min_length < length."""
    if min_length and min_length < length:
        return rng.integers(min_length, length + 1, size=count)
    return np.full(count, length, dtype=np.int64)


def parity(rng: np.random.Generator, count: int, length: int, min_length: int = 0,
           per_step: bool = False) -> SequenceSet:
    """Random bit strings; target the XOR of all bits (`per_step`: of the bits so far).

    Inputs (L, 1) float bits; targets (count,) in {0, 1}, or (L,) running parity per sequence.
    """
    seqs, targets = [], []
    for L in _lengths(rng, count, length, min_length):
        bits = rng.integers(0, 2, size=int(L))
        running = np.cumsum(bits) % 2  # the lectures' XOR table, applied step after step
        seqs.append(bits.astype(np.float32)[:, None])
        targets.append(running.astype(np.int64) if per_step else int(running[-1]))
    return SequenceSet(seqs, targets if per_step else np.array(targets, dtype=np.int64),
                       classes=["0", "1"], kind="tag" if per_step else "class")


def adding(rng: np.random.Generator, count: int, length: int, min_length: int = 0) -> SequenceSet:
    """The adding problem: inputs (L, 2) = (value, marker); target the sum of the 2 marked values."""
    if length < 2 or (min_length and min_length < 2):
        raise ValueError(f"the adding problem needs sequences of at least 2 steps, got length {length}")
    seqs, targets = [], []
    for L in _lengths(rng, count, length, min_length):
        L = int(L)
        x = np.zeros((L, 2), dtype=np.float32)
        x[:, 0] = rng.random(L, dtype=np.float32)
        half = L // 2
        first, second = rng.integers(0, half), rng.integers(half, L)
        x[[first, second], 1] = 1.0
        seqs.append(x)
        targets.append(float(x[first, 0]) + float(x[second, 0]))
    return SequenceSet(seqs, np.array(targets, dtype=np.float32), classes=[], kind="value")


def larger(rng: np.random.Generator, count: int, length: int, min_length: int = 0) -> SequenceSet:
    """Two input streams (L, 2) ~ U(0,1); target 1 when the first has the larger total."""
    seqs, targets = [], []
    for L in _lengths(rng, count, length, min_length):
        x = rng.random((int(L), 2), dtype=np.float32)
        seqs.append(x)
        targets.append(int(x[:, 0].sum() > x[:, 1].sum()))
    return SequenceSet(seqs, np.array(targets, dtype=np.int64), classes=["second", "first"], kind="class")


def copy(rng: np.random.Generator, count: int, delay: int, symbols: int = 5,
         alphabet: int = 8) -> SequenceSet:
    """Copy after a delay: S = `symbols` symbols from K = `alphabet`, `delay` blanks, go, recall.

    Inputs (S + delay + S, K + 2): one-hot symbol, then channel K = blank, K + 1 = go.
    Targets (L,): IGNORE except the last S steps, which hold the S symbols in order.
    """
    if symbols < 1 or alphabet < 2:
        raise ValueError(f"copy needs symbols >= 1 and alphabet >= 2, got {symbols} and {alphabet}")
    blank, go = alphabet, alphabet + 1
    L = symbols + delay + symbols
    seqs, targets = [], []
    for _ in range(count):
        sym = rng.integers(0, alphabet, size=symbols)
        tokens = np.full(L, blank)
        tokens[:symbols] = sym
        tokens[symbols + delay] = go  # the go marker is the first recall step
        x = np.zeros((L, alphabet + 2), dtype=np.float32)
        x[np.arange(L), tokens] = 1.0
        y = np.full(L, IGNORE, dtype=np.int64)
        y[-symbols:] = sym
        seqs.append(x)
        targets.append(y)
    return SequenceSet(seqs, targets, classes=[str(k) for k in range(alphabet)], kind="tag")


def order(rng: np.random.Generator, count: int, length: int, min_length: int = 0,
          vocab: int = 8) -> SequenceSet:
    """Random tokens with one A (token 0) and one B (token 1); target 1 when A comes first.

    Inputs (L, V) one-hot; the other tokens are drawn from 2..V-1.
    """
    if vocab < 3:
        raise ValueError(f"order needs a vocabulary of at least 3 tokens, got {vocab}")
    if length < 2 or (min_length and min_length < 2):
        raise ValueError(f"order needs sequences of at least 2 steps, got length {length}")
    seqs, targets = [], []
    for L in _lengths(rng, count, length, min_length):
        L = int(L)
        tokens = rng.integers(2, vocab, size=L)
        a, b = rng.choice(L, size=2, replace=False)
        tokens[a], tokens[b] = 0, 1
        x = np.zeros((L, vocab), dtype=np.float32)
        x[np.arange(L), tokens] = 1.0
        seqs.append(x)
        targets.append(int(a < b))
    return SequenceSet(seqs, np.array(targets, dtype=np.int64), classes=["B first", "A first"], kind="class")


def make_synthetic(name: str, rng: np.random.Generator, count: int, *, length: int, min_length: int = 0,
                   per_step: bool = False, delay: int = 0, symbols: int = 5, alphabet: int = 8) -> SequenceSet:
    """One of SYNTHETIC by name; `per_step` asks parity for its running-parity tags.

    `length` is T for parity, adding, larger and order; copy uses `delay`, `symbols`, `alphabet`.
    """
    if name == "parity":
        return parity(rng, count, length, min_length, per_step=per_step)
    if name == "adding":
        return adding(rng, count, length, min_length)
    if name == "larger":
        return larger(rng, count, length, min_length)
    if name == "copy":
        return copy(rng, count, delay, symbols=symbols, alphabet=alphabet)
    if name == "order":
        return order(rng, count, length, min_length, vocab=alphabet)
    raise ValueError(f"unknown synthetic task {name!r} (known: {', '.join(SYNTHETIC)})")
