"""Output heads for real-valued targets: point, Gaussian and mixture density (Bishop 1994; Graves 2013).

A head maps features (..., F) to a distribution over targets (..., S, D): S steps
(the horizon of a direct forecast, 1 otherwise), D dimensions per step.

Mixture density (Graves 2013, "Generating sequences with recurrent neural networks",
eqs. 18-25): from the linear output ŷ = (ê, π̂, μ̂, σ̂, ρ̂)

    π_k = softmax(π̂)_k          mixture weights (K components)
    μ_k = μ̂_k                    means (D each)
    σ_k = exp(σ̂_k)              scales (D each)
    ρ_k = tanh(ρ̂_k)             correlation, for D = 2 only (full 2×2 covariance)

and p(y) = Σ_k π_k N(y | μ_k, Σ_k), Σ_k diagonal for D ≠ 2 (or correlated=False).
For D = 2 with correlation (eq. 24-25):

    Z = (y1−μ1)²/σ1² + (y2−μ2)²/σ2² − 2ρ(y1−μ1)(y2−μ2)/(σ1σ2)
    N(y) = exp(−Z / (2(1−ρ²))) / (2π σ1 σ2 √(1−ρ²))

The loss is the negative log-likelihood −log p(y), computed with log-sum-exp.
A Gaussian head is the mixture with K = 1. The point head predicts a value and is
trained by MSE or MAE.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

LOG_2PI = math.log(2 * math.pi)
MIN_LOG_SCALE = -9.0  # exp(-9) ≈ 1e-4 of the (standardised) target scale: keeps the NLL finite


class Mixture:
    """A batch of K-component Gaussian mixtures over D-dim vectors.

    logits (..., K); means (..., K, D); log_scales (..., K, D); corr (..., K) in (−1, 1) or None
    (only for D = 2). Batch shape `...` is anything (N, S) for example.
    """

    def __init__(self, logits: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor,
                 corr: torch.Tensor | None = None):
        if means.shape != log_scales.shape or means.shape[:-1] != logits.shape:
            raise ValueError(f"mixture parameter shapes disagree: logits {tuple(logits.shape)}, means "
                             f"{tuple(means.shape)}, log_scales {tuple(log_scales.shape)}")
        if corr is not None and (means.shape[-1] != 2 or corr.shape != logits.shape):
            raise ValueError("corr is for 2-D mixtures only and must have the shape of logits (..., K)")
        self.logits, self.means, self.log_scales, self.corr = logits, means, log_scales, corr

    @property
    def components(self) -> int:
        return self.logits.shape[-1]

    @property
    def dim(self) -> int:
        return self.means.shape[-1]

    @property
    def batch_shape(self) -> torch.Size:
        return self.logits.shape[:-1]

    @property
    def weights(self) -> torch.Tensor:
        return self.logits.softmax(-1)

    @property
    def scales(self) -> torch.Tensor:
        return self.log_scales.exp()

    def component_log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """log N_k(y) for every component: y (..., D) -> (..., K)."""
        diff = (y.unsqueeze(-2) - self.means) * torch.exp(-self.log_scales)  # (..., K, D) standardised
        if self.corr is None:
            return -0.5 * (diff ** 2).sum(-1) - self.log_scales.sum(-1) - 0.5 * self.dim * LOG_2PI
        rho = self.corr
        one_minus = 1 - rho ** 2
        z = diff[..., 0] ** 2 + diff[..., 1] ** 2 - 2 * rho * diff[..., 0] * diff[..., 1]  # Graves eq. 25
        return -z / (2 * one_minus) - self.log_scales.sum(-1) - 0.5 * torch.log(one_minus) - LOG_2PI

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """log p(y): y (..., D) -> (...)."""
        return torch.logsumexp(self.logits.log_softmax(-1) + self.component_log_prob(y), dim=-1)

    def nll(self, y: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood over the batch (a scalar)."""
        return -self.log_prob(y).mean()

    def mean(self) -> torch.Tensor:
        """E[y] (..., D) = Σ_k π_k μ_k."""
        return (self.weights.unsqueeze(-1) * self.means).sum(-2)

    def variance(self) -> torch.Tensor:
        """Marginal variance per dimension (..., D): Σ π_k (σ_k² + μ_k²) − E[y]²."""
        w = self.weights.unsqueeze(-1)
        second = (w * (self.scales ** 2 + self.means ** 2)).sum(-2)
        return (second - self.mean() ** 2).clamp_min(0)

    def sample(self, num_samples: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw (num_samples, ..., D): a component by its weight, then a (correlated) Gaussian draw."""
        shape = (num_samples,) + tuple(self.batch_shape)
        k = torch.multinomial(self.weights.reshape(-1, self.components).double(), num_samples, replacement=True,
                              generator=generator)  # (B, S)
        k = k.T.reshape(shape)  # (S, ...)

        def pick(t):  # t (..., K, X) -> (S, ..., X) at the drawn components
            t = t.unsqueeze(0).expand(shape + t.shape[-2:])
            return t.gather(-2, k[..., None, None].expand(shape + (1, t.shape[-1]))).squeeze(-2)

        mu, sigma = pick(self.means), pick(self.scales)
        eps = torch.randn(shape + (self.dim,), generator=generator, dtype=mu.dtype, device=mu.device)
        if self.corr is not None:  # y2 = μ2 + σ2 (ρ e1 + √(1−ρ²) e2)
            rho = pick(self.corr.unsqueeze(-1))[..., 0]
            eps = torch.stack([eps[..., 0], rho * eps[..., 0] + torch.sqrt(1 - rho ** 2) * eps[..., 1]], -1)
        return mu + sigma * eps

    def cdf(self, y: torch.Tensor) -> torch.Tensor:
        """Marginal CDF per dimension: y (..., D) -> (..., D) = Σ π_k Φ((y − μ_k)/σ_k)."""
        z = (y.unsqueeze(-2) - self.means) / self.scales  # (..., K, D)
        phi = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
        return (self.weights.unsqueeze(-1) * phi).sum(-2)

    def quantile(self, q: float, iterations: int = 60) -> torch.Tensor:
        """Marginal q-quantile per dimension (..., D): closed form for K = 1, bisection on the CDF otherwise."""
        if not 0 < q < 1:
            raise ValueError(f"quantile level must be in (0, 1), got {q}")
        if self.components == 1:
            return self.means[..., 0, :] + self.scales[..., 0, :] * math.sqrt(2) * torch.erfinv(
                torch.tensor(2 * q - 1, dtype=self.means.dtype))
        lo = (self.means - 10 * self.scales).amin(-2)
        hi = (self.means + 10 * self.scales).amax(-2)
        for _ in range(iterations):
            mid = (lo + hi) / 2
            below = self.cdf(mid) < q
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return (lo + hi) / 2

    def interval(self, level: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Central prediction interval holding `level` of the mass: (lower, upper), each (..., D)."""
        alpha = (1 - level) / 2
        return self.quantile(alpha), self.quantile(1 - alpha)

    def to_torch(self) -> torch.distributions.Distribution:
        """The same distribution as a torch.distributions.MixtureSameFamily (for checks and reuse)."""
        D = torch.distributions
        if self.corr is None:
            comp = D.Independent(D.Normal(self.means, self.scales), 1)
        else:
            s = self.scales
            cov = torch.stack([torch.stack([s[..., 0] ** 2, self.corr * s[..., 0] * s[..., 1]], -1),
                               torch.stack([self.corr * s[..., 0] * s[..., 1], s[..., 1] ** 2], -1)], -2)
            comp = D.MultivariateNormal(self.means, covariance_matrix=cov)
        return D.MixtureSameFamily(D.Categorical(logits=self.logits), comp)


class Point:
    """A point forecast (..., D) in the same interface: mean, sample (repeats), loss."""

    def __init__(self, value: torch.Tensor, loss: str = "mse"):
        self.value, self.loss_kind = value, loss

    def mean(self) -> torch.Tensor:
        return self.value

    def sample(self, num_samples: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.value.unsqueeze(0).expand((num_samples,) + tuple(self.value.shape))

    def loss(self, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.value, y) if self.loss_kind == "mse" else F.l1_loss(self.value, y)


class PointHead(nn.Module):
    """Linear features (..., F) -> `Point` (..., S, D), trained by MSE or MAE."""

    def __init__(self, in_features: int, dim: int = 1, steps: int = 1, loss: str = "mse"):
        super().__init__()
        if loss not in ("mse", "mae"):
            raise ValueError(f"point loss {loss!r}: expected mse or mae")
        self.dim, self.steps, self.loss_kind = dim, steps, loss
        self.proj = nn.Linear(in_features, steps * dim)

    def forward(self, features: torch.Tensor) -> Point:
        out = self.proj(features)
        return Point(out.reshape(features.shape[:-1] + (self.steps, self.dim)), self.loss_kind)

    def loss(self, dist: Point, y: torch.Tensor) -> torch.Tensor:
        return dist.loss(y)


class MixtureDensityHead(nn.Module):
    """Linear features (..., F) -> `Mixture` over (..., S, D) with K components (Graves 2013, eqs. 18-23).

    Args:
        in_features: F. dim: D. components: K (1 = a Gaussian head). steps: S.
        correlated: for D = 2, one correlation per component (ρ = tanh(ρ̂)); default True for D = 2.
    """

    def __init__(self, in_features: int, dim: int = 1, components: int = 1, steps: int = 1,
                 correlated: bool | None = None):
        super().__init__()
        if components < 1:
            raise ValueError(f"components must be >= 1, got {components}")
        correlated = (dim == 2) if correlated is None else correlated
        if correlated and dim != 2:
            raise ValueError(f"correlated mixtures are for 2-D targets (Graves 2013), got dim {dim}")
        self.dim, self.components, self.steps, self.correlated = dim, components, steps, correlated
        self.per_component = 1 + 2 * dim + int(correlated)
        self.proj = nn.Linear(in_features, steps * components * self.per_component)
        with torch.no_grad():  # start with well-spread components: means apart, unit scales
            bias = self.proj.bias.view(steps, components, self.per_component)
            bias.zero_()
            if components > 1:
                bias[:, :, 1:1 + dim] = torch.linspace(-1, 1, components)[:, None]

    def forward(self, features: torch.Tensor) -> Mixture:
        K, D = self.components, self.dim
        out = self.proj(features).reshape(features.shape[:-1] + (self.steps, K, self.per_component))
        logits = out[..., 0]  # (..., S, K)
        means = out[..., 1:1 + D]  # (..., S, K, D)
        log_scales = out[..., 1 + D:1 + 2 * D].clamp_min(MIN_LOG_SCALE)
        corr = torch.tanh(out[..., 1 + 2 * D]) * (1 - 1e-6) if self.correlated else None
        return Mixture(logits, means, log_scales, corr)

    def loss(self, dist: Mixture, y: torch.Tensor) -> torch.Tensor:
        """Mean NLL per (…, S) target vector."""
        return dist.nll(y)


def make_head(kind: str, in_features: int, dim: int = 1, steps: int = 1, components: int = 3,
              point_loss: str = "mse") -> nn.Module:
    """`point`, `gaussian` (K = 1) or `mixture` (K = components)."""
    if kind == "point":
        return PointHead(in_features, dim, steps, point_loss)
    if kind == "gaussian":
        return MixtureDensityHead(in_features, dim, 1, steps)
    if kind == "mixture":
        return MixtureDensityHead(in_features, dim, components, steps)
    raise ValueError(f"head {kind!r}: expected point, gaussian or mixture")
