"""Mixture density heads (Graves 2013): NLL against a direct computation and torch.distributions,
a density that integrates to one, sampling moments, quantiles, gradients, and recovering a known mixture."""
import math

import pytest
import torch

from rnnkit.models.mdn import Mixture, MixtureDensityHead, Point, PointHead, make_head


def random_mixture(batch=(5,), K=3, D=1, correlated=False, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch + (K,), generator=g, dtype=dtype)
    means = 2 * torch.randn(batch + (K, D), generator=g, dtype=dtype)
    log_scales = 0.5 * torch.randn(batch + (K, D), generator=g, dtype=dtype)
    corr = torch.tanh(torch.randn(batch + (K,), generator=g, dtype=dtype)) if correlated else None
    return Mixture(logits, means, log_scales, corr)


def direct_density(m: Mixture, y: torch.Tensor) -> torch.Tensor:
    """p(y) written out term by term, Graves 2013 eqs. 23-25 (no log-sum-exp)."""
    w, mu, s = m.weights, m.means, m.scales
    total = torch.zeros(y.shape[:-1], dtype=y.dtype)
    for k in range(m.components):
        if m.corr is None:
            comp = torch.ones(y.shape[:-1], dtype=y.dtype)
            for d in range(m.dim):
                z = (y[..., d] - mu[..., k, d]) / s[..., k, d]
                comp = comp * torch.exp(-0.5 * z ** 2) / (math.sqrt(2 * math.pi) * s[..., k, d])
        else:
            rho = m.corr[..., k]
            z1 = (y[..., 0] - mu[..., k, 0]) / s[..., k, 0]
            z2 = (y[..., 1] - mu[..., k, 1]) / s[..., k, 1]
            Z = z1 ** 2 + z2 ** 2 - 2 * rho * z1 * z2
            comp = torch.exp(-Z / (2 * (1 - rho ** 2))) / (
                2 * math.pi * s[..., k, 0] * s[..., k, 1] * torch.sqrt(1 - rho ** 2))
        total = total + w[..., k] * comp
    return total


@pytest.mark.parametrize("K,D,correlated", [(1, 1, False), (3, 1, False), (2, 2, True), (4, 2, False), (2, 3, False)])
def test_nll_matches_direct_computation_and_torch_distributions(K, D, correlated):
    m = random_mixture((4, 3), K, D, correlated)
    y = torch.randn(4, 3, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2
    log_p = m.log_prob(y)
    assert log_p.shape == (4, 3)
    torch.testing.assert_close(log_p, torch.log(direct_density(m, y)))
    torch.testing.assert_close(log_p, m.to_torch().log_prob(y))
    torch.testing.assert_close(m.nll(y), -log_p.mean())


def test_one_dimensional_density_integrates_to_one():
    m = random_mixture((3,), K=3, D=1)
    grid = torch.linspace(-30, 30, 60001, dtype=torch.float64)
    dens = m.log_prob(grid[:, None, None].expand(-1, 3, 1)).exp()  # (G, 3)
    integral = torch.trapezoid(dens, grid, dim=0)
    torch.testing.assert_close(integral, torch.ones(3, dtype=torch.float64), atol=1e-6, rtol=0)


def test_correlated_two_dimensional_density_integrates_to_one():
    m = random_mixture((1,), K=2, D=2, correlated=True, seed=3)
    axis = torch.linspace(-25, 25, 1001, dtype=torch.float64)
    y = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1)  # (G, G, 2)
    dens = m.log_prob(y[:, :, None]).exp()[..., 0]  # (G, G)
    integral = torch.trapezoid(torch.trapezoid(dens, axis, dim=1), axis, dim=0)
    assert abs(float(integral) - 1) < 1e-4


def test_sampling_matches_mean_variance_and_correlation():
    g = torch.Generator().manual_seed(0)
    m = random_mixture((2,), K=3, D=1, seed=5)
    x = m.sample(40000, g)  # (S, 2, 1)
    assert x.shape == (40000, 2, 1)
    sd = m.variance().sqrt()
    torch.testing.assert_close(x.mean(0), m.mean(), atol=float(4 * sd.max() / 200), rtol=0)
    torch.testing.assert_close(x.var(0), m.variance(), rtol=0.04, atol=0)
    # 2-D, one correlated component: the sample correlation is ρ
    m2 = Mixture(torch.zeros(1, 1, dtype=torch.float64), torch.tensor([[[1.0, -2.0]]], dtype=torch.float64),
                 torch.log(torch.tensor([[[0.5, 2.0]]], dtype=torch.float64)),
                 torch.tensor([[0.7]], dtype=torch.float64))
    s = m2.sample(40000, g)[:, 0]  # (S, 2)
    assert abs(float(torch.corrcoef(s.T)[0, 1]) - 0.7) < 0.02
    torch.testing.assert_close(s.std(0), torch.tensor([0.5, 2.0], dtype=torch.float64), rtol=0.03, atol=0)


def test_quantiles_invert_the_cdf_and_match_torch_for_one_component():
    m = random_mixture((6,), K=3, D=1, seed=2)
    for q in (0.025, 0.1, 0.5, 0.9, 0.975):
        x = m.quantile(q)
        torch.testing.assert_close(m.cdf(x), torch.full_like(x, q), atol=1e-9, rtol=0)
    one = random_mixture((6,), K=1, D=1, seed=4)
    normal = torch.distributions.Normal(one.means[..., 0, :], one.scales[..., 0, :])
    torch.testing.assert_close(one.quantile(0.9), normal.icdf(torch.tensor(0.9, dtype=torch.float64)))
    lo, hi = one.interval(0.8)
    torch.testing.assert_close(one.cdf(hi) - one.cdf(lo), torch.full_like(lo, 0.8))


def test_nll_gradients_pass_gradcheck_in_float64():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, dtype=torch.float64, generator=g, requires_grad=True)
    means = torch.randn(3, 2, 2, dtype=torch.float64, generator=g, requires_grad=True)
    log_scales = (0.3 * torch.randn(3, 2, 2, dtype=torch.float64, generator=g)).requires_grad_()
    raw_corr = torch.randn(3, 2, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.randn(3, 2, dtype=torch.float64, generator=g, requires_grad=True)

    def nll(logits, means, log_scales, raw_corr, y):
        return Mixture(logits, means, log_scales, torch.tanh(raw_corr)).nll(y)

    assert torch.autograd.gradcheck(nll, (logits, means, log_scales, raw_corr, y))
    head = MixtureDensityHead(4, dim=1, components=3, steps=2).double()
    feats = torch.randn(5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    target = torch.randn(5, 2, 1, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(lambda f: head(f).nll(target), (feats,))


def test_head_shapes_and_parameterisation():
    head = MixtureDensityHead(8, dim=2, components=4, steps=3)
    dist = head(torch.randn(5, 8))
    assert dist.logits.shape == (5, 3, 4) and dist.means.shape == (5, 3, 4, 2) and dist.corr.shape == (5, 3, 4)
    assert torch.allclose(dist.weights.sum(-1), torch.ones(5, 3))
    assert (dist.scales > 0).all() and (dist.corr.abs() < 1).all()
    assert dist.sample(7).shape == (7, 5, 3, 2)
    assert MixtureDensityHead(8, dim=2, correlated=False)(torch.randn(5, 8)).corr is None
    with pytest.raises(ValueError, match="2-D"):
        MixtureDensityHead(8, dim=3, correlated=True)
    point = make_head("point", 8, dim=1, steps=2)
    p = point(torch.randn(5, 8))
    assert isinstance(point, PointHead) and isinstance(p, Point) and p.mean().shape == (5, 2, 1)
    assert p.sample(3).shape == (3, 5, 2, 1)
    with pytest.raises(ValueError, match="expected point, gaussian or mixture"):
        make_head("laplace", 8)


def test_training_recovers_a_known_two_component_mixture():
    """Data from 0.3·N(−2, 0.5²) + 0.7·N(1.5, 0.8²): the head's NLL fit finds the components."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    n = 4000
    first = torch.rand(n, generator=g) < 0.3
    y = torch.where(first, -2 + 0.5 * torch.randn(n, generator=g), 1.5 + 0.8 * torch.randn(n, generator=g))
    y = y[:, None, None]  # (n, S=1, D=1)
    head = MixtureDensityHead(1, dim=1, components=2)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    x = torch.ones(n, 1)
    for _ in range(300):
        loss = head(x).nll(y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    dist = head(x[:1])
    order = dist.means[0, 0, :, 0].argsort()
    w = dist.weights[0, 0, order]
    mu = dist.means[0, 0, order, 0]
    sd = dist.scales[0, 0, order, 0]
    torch.testing.assert_close(w, torch.tensor([0.3, 0.7]), atol=0.03, rtol=0)
    torch.testing.assert_close(mu, torch.tensor([-2.0, 1.5]), atol=0.08, rtol=0)
    torch.testing.assert_close(sd, torch.tensor([0.5, 0.8]), atol=0.06, rtol=0)
