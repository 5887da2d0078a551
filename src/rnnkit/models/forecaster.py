"""Forecasting models: a window in, a distribution over the next values out.

    Forecaster:     x (N, L, C+F) → Recurrent (any cell) → head
        direct:     the last output h_L → a distribution over all h future steps   (N, h, C)
        recursive:  every output h_t → a distribution over the next value          (N, L, C)
                    (trained at every position; forecasts feed a sample or the mean
                    back in, one `Recurrent.step` per future step)
    ar_order p:     a linear autoregression on the last p target values of the window is
                    added to the predicted mean (LSTNet's "highway", Lai et al. 2018): the
                    RNN then models what a linear AR(p) leaves over
    MLPForecaster:  the lectures' baseline: the flattened window → MLP → the same heads (direct only)

C target channels, F known covariates (season sin/cos) that are given for future
steps too. Heads: `rnnkit.models.mdn` (point, gaussian, mixture).
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import Dropout, Recurrent
from .mdn import Mixture, MixtureDensityHead, Point, PointHead, make_head  # noqa: F401 (re-exported)

MULTI_STEP = ("direct", "recursive")


class _Member(nn.Module):
    """One encoder and head of a Forecaster."""

    def __init__(self, input_size, hidden_size, num_layers, dropout, cell, head, target_size, steps, components,
                 point_loss, ar_order, cell_options):
        super().__init__()
        self.rnn = Recurrent(cell, input_size, hidden_size, num_layers=num_layers, dropout=dropout, **cell_options)
        self.drop = Dropout(dropout)
        self.head = make_head(head, hidden_size, target_size, steps, components, point_loss)
        self.ar = None
        if ar_order:  # p lags -> S steps, shared by the channels; starts at zero (the plain RNN)
            self.ar = nn.Linear(ar_order, steps)
            nn.init.zeros_(self.ar.weight)
            nn.init.zeros_(self.ar.bias)

    def autoregression(self, lags: torch.Tensor) -> torch.Tensor:
        """lags (..., p, C), oldest first -> the linear term (..., S, C)."""
        return self.ar(lags.transpose(-1, -2)).transpose(-1, -2)


class Forecaster(nn.Module):
    """Encoder RNN over a window, then a point / Gaussian / mixture density head; optionally an ensemble.

    Args:
        target_size: C, values per step. feature_size: F, known covariates per step.
        horizon: h (direct: the head predicts h steps at once).
        cell, hidden_size, num_layers, dropout, **cell_options: the `Recurrent` stack.
        head: point, gaussian or mixture; components: K for mixture; point_loss: mse or mae.
        multi_step: direct or recursive.
        ar_order: p > 0 adds a linear AR(p) on the window's last p target values to
            the mean of every step (and every mixture component); 0 is off.
        ensemble: E independent members (own initialisation, own loss); the forecast is
            their equal-weight mixture (Lakshminarayanan et al. 2017, "deep ensembles"):
            a mixture of E·K components, or the mean of E points.
    """

    def __init__(self, target_size: int = 1, feature_size: int = 0, horizon: int = 1, *, cell: str = "lstm",
                 hidden_size: int = 32, num_layers: int = 1, dropout: float = 0.0, head: str = "gaussian",
                 components: int = 3, point_loss: str = "mse", multi_step: str = "direct", ensemble: int = 1,
                 ar_order: int = 0, **cell_options):
        super().__init__()
        if multi_step not in MULTI_STEP:
            raise ValueError(f"multi_step {multi_step!r}: expected direct or recursive")
        if ensemble < 1:
            raise ValueError(f"ensemble must be >= 1, got {ensemble}")
        if ar_order < 0:
            raise ValueError(f"ar_order must be >= 0, got {ar_order}")
        self.ar_order = ar_order
        self.target_size, self.feature_size, self.horizon = target_size, feature_size, horizon
        self.multi_step, self.head_kind = multi_step, head
        steps = horizon if multi_step == "direct" else 1
        self.members = nn.ModuleList(
            _Member(target_size + feature_size, hidden_size, num_layers, dropout, cell, head, target_size, steps,
                    components, point_loss, ar_order, cell_options) for _ in range(ensemble))

    @property
    def head(self):
        return self.members[0].head

    def forward(self, x: torch.Tensor, state=None):
        """x (N, L, C+F) -> (distribution, state).

        direct: a distribution with batch shape (N, h); recursive: (N, L), position t
        predicting step t+1. With an ensemble the distribution is the members' mixture
        and keeps the members' own in `.members` (for the loss); state is a list, one
        per member.
        """
        dists, states = [], []
        lags = self._lags(x) if self.ar_order else None  # direct (N, p, C); recursive (N, L, p, C)
        for i, m in enumerate(self.members):
            out, st = m.rnn(x, None if state is None else state[i])  # (N, L, H)
            if self.multi_step == "direct":
                dist = m.head(m.drop(out[:, -1]))  # batch (N, h)
                if m.ar is not None:
                    dist = shift_mean(dist, m.autoregression(lags))
            else:
                dist = _squeeze_steps(m.head(m.drop(out)))  # batch (N, L)
                if m.ar is not None:
                    dist = shift_mean(dist, m.autoregression(lags).squeeze(-2))
            dists.append(dist)
            states.append(st)
        return combine(dists), states

    def _lags(self, x: torch.Tensor) -> torch.Tensor:
        """The last p target values (zeros before the window's start): direct (N, p, C) at the
        window's end; recursive (N, L, p, C) at every position."""
        p, values = self.ar_order, x[..., :self.target_size]
        before = p - 1 if self.multi_step == "recursive" else max(p - x.shape[1], 0)
        padded = nn.functional.pad(values, (0, 0, before, 0))  # zeros before the first step
        if self.multi_step == "direct":
            return padded[:, -p:]
        return padded.unfold(1, p, 1).transpose(-1, -2)  # (N, L, p, C)

    def loss(self, dist, y: torch.Tensor) -> torch.Tensor:
        """`forecast_loss`: mean NLL (probabilistic heads) or MSE/MAE (point) of targets y (N, h or L, C)."""
        return forecast_loss(dist, y)

    @torch.no_grad()
    def forecast(self, x: torch.Tensor, horizon: int, num_samples: int = 0, future_features: torch.Tensor | None = None,
                 feed: str = "sample", generator: torch.Generator | None = None):
        """Forecast `horizon` steps after each window.

        Args:
            x: (N, L, C+F) windows. future_features: (N, horizon, F) covariates of the
                future steps (recursive mode with F > 0).
            num_samples: S sample paths (0: none). feed (recursive): "sample" feeds each
                path its own draw; "mean" feeds the mean back (one path per member; the
                returned distributions are then conditional on that path).
        Returns: (mean (N, h, C), samples (S, N, h, C) or None, distribution or None).
            The distribution (batch shape (N, h)) is the direct head's, or for recursive
            mode the one-step distribution at each step along the mean path (feed="mean"),
            or None (recursive sampling: use the samples).
        """
        if self.multi_step == "direct":
            if horizon > self.horizon:
                raise ValueError(f"this direct model predicts {self.horizon} steps; asked for {horizon}")
            dist, _ = self(x)
            dist = _first_steps(dist, horizon)
            samples = dist.sample(num_samples, generator) if num_samples else None
            return dist.mean(), samples, dist
        if self.feature_size and (future_features is None or future_features.shape[1] < horizon):
            raise ValueError("recursive forecasting with covariates needs future_features (N, horizon, F)")
        E = len(self.members)
        if feed == "sample" and num_samples:  # each member runs its share of the sample paths
            per = -(-num_samples // E)
            parts = [self._recursive(m, x, horizon, per, future_features, generator)[0] for m in self.members]
            samples = torch.cat(parts, 0)[:num_samples]  # (S, N, h, C)
            return samples.mean(0), samples, None
        runs = [self._recursive(m, x, horizon, 0, future_features, generator) for m in self.members]
        dist = combine([d for _, d in runs])
        samples = dist.sample(num_samples, generator) if num_samples else None
        return torch.stack([p[0] for p, _ in runs]).mean(0), samples, dist

    def _recursive(self, member, x, horizon, paths, future_features, generator):
        """One member's rollout: `paths` sample paths (S, N, h, C), or the mean path (1, N, h, C) and dists."""
        N, C, F = x.shape[0], self.target_size, self.feature_size
        out, state = member.rnn(x)  # (N, L, H)
        h_t = out[:, -1]  # (N, H)
        P = max(paths, 1)
        lags = self._lags(x)[:, -1] if member.ar is not None else None  # (N, p, C) up to the origin
        if P > 1:  # every sample path carries its own state: (layers, P·N, H)
            state = tuple(s.repeat_interleave(P, dim=1) for s in state)
            h_t = h_t.repeat_interleave(P, dim=0)
            lags = lags.repeat_interleave(P, dim=0) if lags is not None else None
        values, dists = [], []
        for k in range(horizon):
            dist = _squeeze_steps(member.head(h_t.unsqueeze(1)))  # batch (P·N, 1)
            if lags is not None:
                dist = shift_mean(dist, member.autoregression(lags))
            if paths:
                y = dist.sample(1, generator)[0, :, 0]  # (P·N, C)
            else:
                y = dist.mean()[:, 0]
                dists.append(dist)
            values.append(y)
            if lags is not None:
                lags = torch.cat([lags[:, 1:], y.unsqueeze(1)], 1)
            if k + 1 < horizon:
                inp = y
                if F:
                    inp = torch.cat([y, future_features[:, k].repeat_interleave(P, dim=0)], dim=-1)
                h_t, state = member.rnn.step(inp, state)
        path = torch.stack(values, dim=1)  # (P·N, h, C)
        path = path.reshape(N, P, horizon, C).transpose(0, 1)  # (P, N, h, C)
        return path, (_cat_steps(dists) if dists else None)


def shift_mean(dist, shift: torch.Tensor):
    """The distribution moved by `shift` (batch shape + (C,)): a point, or every mixture component's mean."""
    if isinstance(dist, Point):
        return Point(dist.value + shift, dist.loss_kind)
    return Mixture(dist.logits, dist.means + shift.unsqueeze(-2), dist.log_scales, dist.corr)


def combine(dists):
    """The equal-weight mixture of an ensemble's distributions (the mean for points); one member: itself."""
    if len(dists) == 1:
        return dists[0]
    if isinstance(dists[0], Point):
        out = Point(torch.stack([d.value for d in dists]).mean(0), dists[0].loss_kind)
    else:
        shift = torch.log(torch.tensor(float(len(dists))))
        corr = None if dists[0].corr is None else torch.cat([d.corr for d in dists], -1)
        out = Mixture(torch.cat([d.logits.log_softmax(-1) - shift for d in dists], -1),
                      torch.cat([d.means for d in dists], -2), torch.cat([d.log_scales for d in dists], -2), corr)
    out.members = dists
    return out


def forecast_loss(dist, y: torch.Tensor) -> torch.Tensor:
    """Training loss: NLL of a mixture or Gaussian, MSE or MAE of a point; an ensemble averages its members' own."""
    members = getattr(dist, "members", None)
    if members is not None:
        return torch.stack([forecast_loss(m, y) for m in members]).mean()
    return dist.nll(y) if isinstance(dist, Mixture) else dist.loss(y)


class MLPForecaster(nn.Module):
    """The overlapping-window MLP: flatten (N, L, C+F) → tanh hidden layers → head over (N, h, C)."""

    def __init__(self, window: int, target_size: int = 1, feature_size: int = 0, horizon: int = 1, *,
                 hidden_size: int = 32, num_layers: int = 2, dropout: float = 0.0, head: str = "gaussian",
                 components: int = 3, point_loss: str = "mse"):
        super().__init__()
        layers, width = [], window * (target_size + feature_size)
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_size), nn.Tanh(), Dropout(dropout)]
            width = hidden_size
        self.body = nn.Sequential(*layers)
        self.horizon, self.head_kind = horizon, head
        self.head = make_head(head, width, target_size, horizon, components, point_loss)

    def forward(self, x: torch.Tensor, state=None):
        return self.head(self.body(x.flatten(1))), None  # batch (N, h)

    def loss(self, dist, y):
        return self.head.loss(dist, y)

    @torch.no_grad()
    def forecast(self, x, horizon, num_samples=0, future_features=None, feed="sample", generator=None):
        dist, _ = self(x)
        dist = _first_steps(dist, horizon)
        return dist.mean(), (dist.sample(num_samples, generator) if num_samples else None), dist


# -- reshaping distributions along the step axis -------------------------------------------------


def _map(dist, fn):
    if isinstance(dist, Point):
        out = Point(fn(dist.value, 1), dist.loss_kind)
    else:
        corr = None if dist.corr is None else fn(dist.corr, 1)
        out = Mixture(fn(dist.logits, 1), fn(dist.means, 2), fn(dist.log_scales, 2), corr)
    if getattr(dist, "members", None) is not None:
        out.members = [_map(m, fn) for m in dist.members]
    return out


def _squeeze_steps(dist):
    """A head run on (N, L, H) gives batch (N, L, 1): fold the single step into L."""
    return _map(dist, lambda t, tail: t.squeeze(-1 - tail))


def select_steps(dist, steps: slice):
    """The distribution at `steps` of its step axis (axis 1): batch (N, S) -> (N, S')."""
    return _map(dist, lambda t, tail: t[(slice(None),) * (t.dim() - 1 - tail) + (steps,)])


def _first_steps(dist, horizon):
    return select_steps(dist, slice(0, horizon))


@torch.no_grad()
def rollout(model: nn.Module, x: torch.Tensor, horizon: int, num_samples: int = 0,
            future_features: torch.Tensor | None = None, feed: str = "sample",
            generator: torch.Generator | None = None):
    """Forecast `horizon` steps with any forecaster, beyond its trained horizon if need be.

    A recursive `Forecaster` carries its state (`Forecaster.forecast`). A direct model
    (or the MLP) asked for more steps than it predicts slides its window: each of the
    S sample paths appends its own draws (or the mean path, with num_samples = 0) and
    the window is encoded again. Returns (mean (N, h, C), samples (S, N, h, C) or None,
    distribution over the first min(h, model horizon) steps or None).
    """
    if getattr(model, "multi_step", "direct") == "recursive" or horizon <= model.horizon:
        return model.forecast(x, horizon, num_samples, future_features, feed, generator)
    N, C, block = x.shape[0], model.head.dim, model.horizon
    F = x.shape[2] - C
    if F and (future_features is None or future_features.shape[1] < horizon):
        raise ValueError("forecasting with covariates needs future_features (N, horizon, F)")
    paths = max(num_samples, 1)
    xs = x.repeat(paths, 1, 1)  # (P·N, L, C+F), path-major
    first, _ = model(x)
    done = []
    while sum(v.shape[1] for v in done) < horizon:
        dist, _ = model(xs)
        y = dist.sample(1, generator)[0] if num_samples else dist.mean()  # (P·N, block, C)
        k0 = sum(v.shape[1] for v in done)
        done.append(y)
        new = y
        if F:
            new = torch.cat([y, future_features[:, k0:k0 + block].repeat(paths, 1, 1)[:, :y.shape[1]]], -1)
        xs = torch.cat([xs, new], 1)[:, -x.shape[1]:]
    path = torch.cat(done, 1)[:, :horizon]  # (P·N, h, C)
    if not num_samples:
        return path, None, first
    samples = path.reshape(paths, N, horizon, C)
    return samples.mean(0), samples, first


def _cat_steps(dists):
    if isinstance(dists[0], Point):
        return Point(torch.cat([d.value for d in dists], 1), dists[0].loss_kind)
    corr = None if dists[0].corr is None else torch.cat([d.corr for d in dists], 1)
    return Mixture(torch.cat([d.logits for d in dists], 1), torch.cat([d.means for d in dists], 1),
                   torch.cat([d.log_scales for d in dists], 1), corr)
