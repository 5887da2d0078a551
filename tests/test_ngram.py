"""The interpolated modified Kneser-Ney baseline: normalisation, a plain-Python oracle, errors;
its mixture with a neural LM."""
import math
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch

from rnnkit.models.ngram import KneserNeyLM, fit_mix_weight, mix_log_probs, modified_kn_discounts


def reference_probs(train, test, K, V):
    """Chen & Goodman's interpolated modified Kneser-Ney, written out with dictionaries."""
    T = len(train)
    K = min(K, T)
    raw = {k: Counter(tuple(train[i:i + k]) for i in range(T - k + 1)) for k in range(1, K + 1)}
    n = {K: dict(raw[K])}
    for k in range(1, K):
        left = defaultdict(set)
        for gram in raw[k + 1]:
            left[gram[1:]].add(gram[0])
        n[k] = {g: len(left.get(g, ())) for g in raw[k]}
    levels = {}
    for k in range(1, K + 1):
        d = modified_kn_discounts(np.array(list(n[k].values())))
        total, gamma = defaultdict(float), defaultdict(float)
        for g, c in n[k].items():
            total[g[:-1]] += c
            if c:
                gamma[g[:-1]] += d[min(c, 3)]
        levels[k] = (d, total, gamma)
    out = []
    for t, w in enumerate(test):
        p = 1.0 / V
        for k in range(1, K + 1):
            if t < k - 1:
                break
            h = tuple(test[t - k + 1:t])
            d, total, gamma = levels[k]
            if total.get(h, 0) == 0:
                continue
            c = n[k].get(h + (w,), 0)
            p = (max(c - d[min(c, 3)], 0) + gamma[h] * p) / total[h]
        out.append(p)
    return np.array(out)


def random_text(rng, length, V):
    """A text with structure (a noisy Markov chain) so every order has repeated n-grams."""
    x = [0]
    for _ in range(length - 1):
        x.append((x[-1] * 3 + 1) % V if rng.random() < 0.7 else int(rng.integers(V)))
    return np.array(x)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_matches_the_plain_python_oracle(order):
    rng = np.random.default_rng(order)
    V = 9
    train, test = random_text(rng, 3000, V), random_text(rng, 300, V)
    test[[5, 50]] = V - 1  # tokens and contexts rare or unseen
    model = KneserNeyLM(order, V).fit(train)
    expected = reference_probs(train.tolist(), test.tolist(), order, V)
    np.testing.assert_allclose(np.exp(model.log_probs(test)), expected, rtol=1e-10)


@pytest.mark.parametrize("order", [1, 2, 4, 6, 8])
def test_probabilities_sum_to_one_over_the_vocabulary(order):
    rng = np.random.default_rng(0)
    V = 12
    train = random_text(rng, 5000, V - 2)  # the last two symbols never occur in training
    model = KneserNeyLM(order, V).fit(train)
    contexts = [train[100:120], train[:3], [], [V - 1] * 10, [V - 2, 0, 1], random_text(rng, 30, V)]
    for context in contexts:
        p = model.distribution(context)
        assert p.shape == (V,) and (p > 0).all()
        assert abs(p.sum() - 1.0) < 1e-12


def test_higher_orders_fit_structured_text_better():
    rng = np.random.default_rng(1)
    text = np.array([int(c) for c in "".join(str(rng.integers(3)) + "0123456" for _ in range(3000))])
    train, test = text[:-2000], text[-2000:]
    bits = [KneserNeyLM(k, 10).fit(train).bits_per_token(test) for k in (1, 2, 4)]
    assert bits[0] > bits[1] > bits[2]


def test_scoring_in_pieces_with_left_context_equals_scoring_whole():
    rng = np.random.default_rng(2)
    train, test = random_text(rng, 4000, 7), random_text(rng, 3000, 7)
    model = KneserNeyLM(4, 7).fit(train)
    whole = model.log_probs(test)
    blocks = np.concatenate([model._probs(test[None, max(0, lo - 3):lo + 500])[0, lo - max(0, lo - 3):]
                             for lo in range(0, 3000, 500)])
    np.testing.assert_allclose(np.exp(whole), blocks)


def test_discounts_are_within_bounds():
    d = modified_kn_discounts(np.array([1] * 50 + [2] * 20 + [3] * 10 + [4] * 5 + [9] * 3))
    assert d[0] == 0 and all(0 <= d[j] <= j for j in (1, 2, 3))
    assert modified_kn_discounts(np.array([1, 1, 2])).tolist() == [0.0, 0.5, 1.0, 1.5]  # too few counts


def test_errors():
    with pytest.raises(ValueError, match="order must be >= 1"):
        KneserNeyLM(0, 5)
    with pytest.raises(ValueError, match="empty"):
        KneserNeyLM(3, 5).fit([])
    with pytest.raises(ValueError, match=r"0\.\.4"):
        KneserNeyLM(3, 5).fit([1, 2, 7])


def test_short_training_text_caps_the_order():
    model = KneserNeyLM(6, 4).fit([0, 1, 2])
    assert model.order == 3
    assert abs(model.distribution([0, 1]).sum() - 1) < 1e-12
    assert math.isfinite(model.bits_per_token([3, 3, 0]))


def test_mixture_is_a_distribution_and_its_weight_ends_at_the_likelihood_optimum():
    rng = np.random.default_rng(0)
    V, n = 7, 400
    p = torch.softmax(torch.as_tensor(rng.normal(size=(n, V)) * 2), -1)  # two models' full distributions
    q = torch.softmax(torch.as_tensor(rng.normal(size=(n, V)) * 2), -1)
    for w in (0.0, 0.3, 1.0):  # mixing every token's log-probability mixes the distributions
        full = mix_log_probs(p.log(), q.log(), w).exp()
        assert torch.allclose(full, w * p + (1 - w) * q, atol=1e-12)
        assert torch.allclose(full.sum(-1), torch.ones(n, dtype=torch.float64))
    targets = torch.as_tensor(rng.integers(0, V, n))
    a, b = p[range(n), targets].log(), q[range(n), targets].log()
    w = fit_mix_weight(a, b)
    grid = np.linspace(0.001, 0.999, 999)
    loglik = [float(mix_log_probs(a, b, g).sum()) for g in grid]
    assert w == pytest.approx(grid[int(np.argmax(loglik))], abs=2e-3)  # EM's fixed point is the maximum
    assert float(mix_log_probs(a, b, w).sum()) >= max(loglik) - 1e-6
    assert float(mix_log_probs(a, b, w).sum()) > max(float(a.sum()), float(b.sum()))
    # one model always better: all the weight goes to it
    assert fit_mix_weight(a, a - 1.0) > 0.99 and fit_mix_weight(a - 1.0, a) < 0.01


def test_mixture_errors_name_the_problem():
    a = torch.zeros(3)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\], got 1.5"):
        mix_log_probs(a, a, 1.5)
    with pytest.raises(ValueError, match=r"equal, non-empty .* got \(3,\) and \(2,\)"):
        fit_mix_weight(a, torch.zeros(2))
    with pytest.raises(ValueError, match="must be finite"):
        fit_mix_weight(a, torch.tensor([0.0, -math.inf, 0.0]))
