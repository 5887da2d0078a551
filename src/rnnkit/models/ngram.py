"""Token n-gram language model with interpolated modified Kneser-Ney smoothing.

The baseline the recurrent LMs are measured against (Chen & Goodman 1998, "An
empirical study of smoothing techniques for language modeling", section 3.5):

    p_k(w | h) = [max(n_k(hw) − D_k(n_k(hw)), 0) + γ_k(h) · p_{k−1}(w | h′)] / Σ_v n_k(hv)
    γ_k(h)     = D_k1 · N1(h·) + D_k2 · N2(h·) + D_k3+ · N3+(h·)
    p_0(w)     = 1 / V

h is the last k − 1 tokens, h′ the last k − 2. n_k is the raw count at the highest
order K and the continuation count N1+(·hw) (distinct tokens seen before hw) below
it. Nj(h·) counts the tokens w with n_k(hw) = j (3+: ≥ 3). Discounts per order from
the counts of counts: Y = n1/(n1 + 2 n2), D1 = 1 − 2Y n2/n1, D2 = 2 − 3Y n3/n2,
D3+ = 3 − 4Y n4/n3. A context never seen in training (or with no counts) backs off
to p_{k−1} whole. Every p_k sums to one over the vocabulary.

Implementation: pure numpy, no per-n-gram Python objects. A k-gram gets an integer id,
its rank among the distinct k-grams; the k-gram starting at i has key
id_{k−1}(i) · V + x[i+k−1] (its (k−1)-gram prefix and last token), so every order's
table is one sorted int64 array of keys, looked up with `searchsorted`. Fitting is one
`np.unique` per order (about a second per order on 11M tokens).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch


class KneserNeyLM:
    """Interpolated modified Kneser-Ney n-gram model over integer tokens.

    Args:
        order: K >= 1 (the longest n-gram: K − 1 tokens of context).
        vocab_size: V; tokens are 0..V−1 (V·(number of distinct n-grams) must fit in int64).
    """

    def __init__(self, order: int, vocab_size: int):
        if order < 1:
            raise ValueError(f"n-gram order must be >= 1, got {order}")
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        self.order, self.vocab_size = order, vocab_size
        self.levels: list[dict] = []  # per order k = 1..K: keys, counts, context totals, discounts
        self.fit_seconds = 0.0

    # -- fitting --------------------------------------------------------------------
    def fit(self, ids) -> "KneserNeyLM":
        """Count every n-gram of order 1..K in ids (T,) and set the discounts. Returns self."""
        start = time.perf_counter()
        x = np.asarray(ids, dtype=np.int64)
        V, K = self.vocab_size, self.order
        if x.size == 0:
            raise ValueError("cannot fit an n-gram model on an empty token sequence")
        if x.min() < 0 or x.max() >= V:
            raise ValueError(f"token ids must lie in 0..{V - 1}, got {x.min()}..{x.max()}")
        raw = []  # per order: (sorted keys, raw counts, gram ids of every position)
        grams = None
        for k in range(1, K + 1):
            if k > len(x):
                break
            keys = x if k == 1 else grams[:-1] * V + x[k - 1:]  # (T−k+1,)
            unique, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True,
                                                       return_counts=True)
            if k > 1:  # continuation counts of the (k−1)-grams: distinct left neighbours
                suffix = grams[first + 1]  # id of the (k−1)-gram that ends each distinct k-gram
                raw[-1] += (np.bincount(suffix, minlength=len(raw[-1][0])),)
            grams = inverse.reshape(-1)
            raw.append((unique, counts))
        self.levels = []
        for k, entry in enumerate(raw, start=1):
            unique, counts = entry[0], entry[1]
            n = counts if k == len(raw) else entry[2]  # raw counts at the top, continuation below
            contexts = len(raw[k - 2][0]) if k > 1 else 1
            self.levels.append(_level(unique, n, V, k, contexts))
        self.order = len(self.levels)
        self.fit_seconds = time.perf_counter() - start
        return self

    # -- scoring --------------------------------------------------------------------
    def _probs(self, x: np.ndarray) -> np.ndarray:
        """x (B, L) -> p (B, L): probability of x[b, t] given x[b, max(0, t−K+1):t]."""
        V = self.vocab_size
        p = np.full(x.shape, 1.0 / V)
        context = np.zeros(x.shape, dtype=np.int64)  # order-1 context: the empty one, id 0
        for k, level in enumerate(self.levels, start=1):
            seen = context >= 0
            key = x if k == 1 else np.where(seen, context, 0) * V + x
            pos = np.searchsorted(level["keys"], key)
            pos = np.minimum(pos, len(level["keys"]) - 1)
            found = seen & (level["keys"][pos] == key)
            gram = np.where(found, pos, -1)  # id of the k-gram ending at t, −1 if unseen
            n = np.where(found, level["counts"][pos], 0)
            h = np.where(seen, context, 0)
            total, gamma = level["total"][h], level["gamma"][h]
            discount = level["discounts"][np.minimum(n, 3)]
            use = seen & (total > 0)
            mixed = (np.maximum(n - discount, 0.0) + gamma * p) / np.where(use, total, 1)
            p = np.where(use, mixed, p)
            # the k-gram ending at t−1 is the context of x[t] at order k+1
            context = np.concatenate([np.full((x.shape[0], 1), -1), gram[:, :-1]], axis=1)
        return p

    def log_probs(self, ids) -> np.ndarray:
        """Natural log-probability of each token of ids (T,) given the tokens before it
        (up to K − 1 of them; the first token is scored with no context). Returns (T,)."""
        x = np.asarray(ids, dtype=np.int64)
        out = np.empty(len(x))
        step = 1 << 20  # blocks of 1M tokens, each with its K−1 tokens of left context
        for lo in range(0, len(x), step):
            left = max(0, lo - self.order + 1)
            out[lo:lo + step] = np.log(self._probs(x[None, left:lo + step])[0, lo - left:])
        return out

    def distribution(self, context) -> np.ndarray:
        """p(w | context) for every w in 0..V−1, (V,); context: the preceding tokens."""
        context = np.asarray(context, dtype=np.int64)[len(context) - self.order + 1:] \
            if self.order > 1 else np.zeros(0, dtype=np.int64)
        V = self.vocab_size
        rows = np.concatenate([np.repeat(context[None], V, axis=0), np.arange(V)[:, None]], axis=1)
        return self._probs(rows)[:, -1]

    def bits_per_token(self, ids) -> float:
        """Mean −log2 p over ids (T,)."""
        return float(-self.log_probs(ids).mean() / math.log(2))

    def num_ngrams(self) -> list[int]:
        """Distinct n-grams per order 1..K."""
        return [len(level["keys"]) for level in self.levels]


def _level(keys: np.ndarray, n: np.ndarray, V: int, k: int, size: int) -> dict:
    """One order's table: keys, counts n, and per context (`size` of them: the distinct
    (k−1)-grams) the total Σ_w n(hw) and the γ numerator."""
    discounts = modified_kn_discounts(n)
    context = keys // V if k > 1 else np.zeros(len(keys), dtype=np.int64)
    total = np.bincount(context, weights=n, minlength=size)
    gamma = np.zeros(size)
    for j in (1, 2, 3):
        hit = (n == j) if j < 3 else (n >= 3)
        gamma += discounts[j] * np.bincount(context[hit], minlength=size)
    return {"keys": keys, "counts": n.astype(np.int64), "total": total, "gamma": gamma,
            "discounts": discounts}


def modified_kn_discounts(n: np.ndarray) -> np.ndarray:
    """[0, D1, D2, D3+] from the counts of counts of n (Chen & Goodman eq. 26), each in [0, j]."""
    c = [int(np.count_nonzero(n == j)) for j in range(5)]
    fallback = np.array([0.0, 0.5, 1.0, 1.5])
    if min(c[1], c[2], c[3], c[4]) == 0:
        return fallback
    Y = c[1] / (c[1] + 2 * c[2])
    d = np.array([0.0, 1 - 2 * Y * c[2] / c[1], 2 - 3 * Y * c[3] / c[2], 3 - 4 * Y * c[4] / c[3]])
    return np.clip(d, 0.0, np.arange(4.0))


def mix_log_probs(model_lp: torch.Tensor, ngram_lp: torch.Tensor, weight: float) -> torch.Tensor:
    """log(w·p_model + (1 − w)·p_ngram), elementwise, from the two models' log-probabilities
    of the same tokens: the linear interpolation of a neural LM with an n-gram model
    (as in Mikolov et al. 2011, "RNNLM toolkit"). A mixture of two distributions over the
    vocabulary, so it sums to one wherever both do. Differentiable in model_lp."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"mixture weight must lie in [0, 1], got {weight}")
    if weight == 1.0:
        return model_lp
    if weight == 0.0:
        return ngram_lp.to(model_lp.dtype).expand_as(model_lp)
    return torch.logaddexp(model_lp + math.log(weight), ngram_lp.to(model_lp.dtype) + math.log1p(-weight))


def fit_mix_weight(model_lp, ngram_lp, *, iterations: int = 200, tol: float = 1e-9) -> float:
    """The weight w in [0, 1] that maximises Σ log(w·p_model + (1 − w)·p_ngram) over the
    tokens given (each model's log-probabilities, same shape), by EM: w ← mean posterior
    of the model component. The objective is concave in w, and each EM step increases it."""
    a = torch.as_tensor(model_lp, dtype=torch.float64).flatten()
    b = torch.as_tensor(ngram_lp, dtype=torch.float64).flatten()
    if a.shape != b.shape or a.numel() == 0:
        raise ValueError(f"fit_mix_weight: need two equal, non-empty sets of log-probabilities, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("fit_mix_weight: the log-probabilities must be finite")
    w = 0.5
    for _ in range(iterations):
        posterior = torch.sigmoid(a + math.log(w) - b - math.log1p(-w))  # p(model | token)
        new = float(posterior.mean().clamp(1e-12, 1 - 1e-12))
        if abs(new - w) < tol:
            return new
        w = new
    return w
