"""Gradient flow over time: the norm of dL_T/dh_k against the lag T − k.

Backpropagation through time multiplies one Jacobian per step,

    dL_T/dh_k = dL_T/dh_T · Π_{t=k+1..T} dh_t/dh_{t-1},    dh_t/dh_{t-1} = diag(act'(·)) W_hh

so in an Elman RNN the norm shrinks or grows roughly like ρ(W_hh)^(T−k) (ρ the
spectral radius) times the activation's slopes: vanishing for ρ < 1, exploding for
ρ > 1 where the units are not saturated (Bengio et al. 1994; Pascanu et al. 2013).
LSTM and GRU carry a path through the cell state (or the z-gated copy) whose
Jacobian is a gate value near 1, and IRNN starts with W_hh = I.

`gradient_by_lag` measures this on any model built on `Recurrent`: it records the
hidden states of a forward pass with `record(detach=False)` and takes the gradient
of the loss at the last step with respect to every recorded h_k (the tensors the
forward pass itself computed), per layer, averaged over the batch.
`spectral_profiles` and `clipping_curves` are the lecture's two demonstrations:
an untrained Elman RNN with W_hh scaled to a chosen spectral radius, and the loss
curve of an exploding Elman RNN with and without gradient-norm clipping.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..layers import Recurrent
from .record import record


@dataclass
class LagProfile:
    """`norms[layer, lag]`: mean over the batch of |dL_T/dh_{T-lag}| (forward direction);
    `counts[lag]`: how many sequences reach back that far."""

    label: str
    norms: np.ndarray
    counts: np.ndarray
    description: str = ""  # what L_T is

    @property
    def lags(self) -> np.ndarray:
        return np.arange(self.norms.shape[1])

    def ratio(self, layer: int = -1, lags: tuple[int, int] = (0, 0)) -> float:
        """norm at lag b / norm at lag a (lags=(a, b)); b = 0 means the largest lag."""
        a, b = lags
        b = b or self.norms.shape[1] - 1
        return float(self.norms[layer, b] / self.norms[layer, a])


def gradient_by_lag(model: nn.Module, loss_of, lengths=None, name: str | None = None,
                    label: str = "") -> LagProfile:
    """Measure |dL_T/dh_k| for every step k and every layer of the (one, or `name`d)
    Recurrent in `model`.

    Args:
        model: any module holding a Recurrent.
        loss_of: loss_of(model) -> scalar L_T; runs one forward pass of the model.
        lengths: (N,) real steps of each sequence (None: all L); T is each sequence's last.
    Returns a LagProfile with norms (layers, L)."""
    with record(model, kinds=("h",), detach=False) as rec:
        loss = loss_of(model)
    steps = rec.step_tensors("h", name)  # k -> L × (N, H)
    dirs = rec.module(name).num_directions
    forward = [k for k in sorted(steps) if k % dirs == 0]  # one per layer
    flat = [h for k in forward for h in steps[k]]
    grads = torch.autograd.grad(loss, flat, allow_unused=True)
    L = len(steps[forward[0]])
    N = flat[0].shape[0]
    norms = torch.stack([torch.zeros(N, dtype=torch.float64) if g is None else g.detach().double().norm(dim=-1).cpu()
                         for g in grads])
    norms = norms.view(len(forward), L, N)  # (layers, L, N)
    last = (torch.full((N,), L) if lengths is None else torch.as_tensor(lengths).cpu()) - 1
    lag = torch.arange(L)
    t = last[None, :] - lag[:, None]  # (lag, N) the step at each lag
    valid = t >= 0
    picked = norms.gather(1, t.clamp(min=0)[None].expand(len(forward), -1, -1))  # (layers, lag, N)
    counts = valid.sum(1)
    mean = (picked * valid).sum(-1) / counts.clamp(min=1)
    return LagProfile(label, mean.numpy(), counts.numpy())


def last_step_loss(task, model, batch):
    """(loss_of, description, lengths) for a task's batch: the loss at the last step.

    charlm: cross-entropy of the last token's prediction; classify (many-to-one): the
    task's loss; tag: cross-entropy at each sequence's last real step; other tasks: the
    task's own loss of the whole batch (said so in the description)."""
    from ..tasks.charlm import CharLM
    from ..tasks.classify import Classify

    if isinstance(task, CharLM):
        def loss_of(m):
            logits, _ = m(batch.inputs)  # (N, L, V)
            return F.cross_entropy(logits[:, -1].float(), batch.targets[:, -1].long())
        return loss_of, "cross-entropy of the last token's prediction", None
    if isinstance(task, Classify) and not task.per_step:
        def loss_of(m):
            out, _ = m(batch.inputs, None, batch.lengths)
            if task.meta["kind"] == "value":
                return F.mse_loss(out.float().squeeze(-1), batch.targets.float())
            return F.cross_entropy(out.float(), batch.targets)
        return loss_of, f"the sequence loss (pooling {task.model_config.pooling})", batch.lengths
    if isinstance(task, Classify):
        def loss_of(m):
            out, _ = m(batch.inputs, None, batch.lengths)  # (N, L, K)
            N, L = out.shape[:2]
            last = (torch.full((N,), L) if batch.lengths is None else torch.as_tensor(batch.lengths)) - 1
            rows = torch.arange(N)
            return F.cross_entropy(out[rows, last].float(), batch.targets[rows, last])
        return loss_of, "cross-entropy at the last real step", batch.lengths

    def loss_of(m):
        return task.compute_loss(m, batch, None).loss
    return loss_of, f"task {task.name!r}'s loss of the whole batch (it has no last-step loss)", None


# -- the lecture's demonstrations -----------------------------------------------------------
def scaled_elman(hidden_size: int, radius: float, nonlinearity: str = "tanh", input_size: int = 2,
                 seed: int = 0) -> Recurrent:
    """An untrained Elman RNN (float32; `.double()` it for long products) whose W_hh is an
    orthogonal matrix times `radius`, so every eigenvalue has modulus `radius` (the
    spectral radius is exactly `radius`)."""
    torch.manual_seed(seed)
    rnn = Recurrent("rnn", input_size, hidden_size, nonlinearity=nonlinearity)
    with torch.no_grad():
        rnn.cells[0].weight_hh.mul_(radius)
    return rnn


def spectral_radius(matrix: torch.Tensor) -> float:
    return float(torch.linalg.eigvals(matrix.detach().double()).abs().max())


def spectral_profiles(radii, nonlinearities=("tanh",), hidden_size: int = 64, length: int = 50,
                      batch: int = 32, seed: int = 0) -> list[LagProfile]:
    """|dL_T/dh_k| against lag for untrained Elman RNNs with W_hh scaled to each radius.

    Inputs are the adding problem's (uniform value, marker) pairs; L_T is the squared
    error of a fixed random linear readout of h_T against 1."""
    from ..data.synthetic import adding

    data = adding(np.random.default_rng(seed), batch, length)
    x = torch.from_numpy(np.stack(data.sequences)).double()  # (N, L, 2); float64: 4^50 and 0.25^50 fit
    profiles = []
    for nonlinearity in nonlinearities:
        for radius in radii:
            rnn = scaled_elman(hidden_size, radius, nonlinearity, seed=seed).double()
            readout = torch.randn(hidden_size, generator=torch.Generator().manual_seed(seed),
                                  dtype=torch.float64) / hidden_size ** 0.5

            def loss_of(m):
                out, _ = m(x)
                return ((out[:, -1] @ readout - 1) ** 2).mean()

            rho = spectral_radius(rnn.cells[0].weight_hh)
            profiles.append(gradient_by_lag(rnn, loss_of, label=f"{nonlinearity}, spectral radius {rho:g}"))
    return profiles


def clipping_curves(clip_norms=(0.0, 1.0), steps: int = 300, radius: float = 1.5, hidden_size: int = 64,
                    length: int = 50, lr: float = 0.1, batch: int = 32, seed: int = 0,
                    nonlinearity: str = "tanh") -> dict[float, np.ndarray]:
    """Training loss per step of an Elman RNN (W_hh scaled to `radius` > 1, so its
    gradients explode) on the adding problem with plain SGD, for each clip norm (0: no clipping).

    Returns {clip_norm: losses (steps,)}; a step whose loss is not finite ends that curve
    (the rest is NaN), as the run would be lost."""
    from ..data.synthetic import adding

    curves = {}
    for clip in clip_norms:
        rnn = scaled_elman(hidden_size, radius, nonlinearity, seed=seed)
        head = nn.Linear(hidden_size, 1)
        params = list(rnn.parameters()) + list(head.parameters())
        optimiser = torch.optim.SGD(params, lr=lr)
        rng = np.random.default_rng(seed)
        losses = np.full(steps, np.nan)
        for step in range(steps):
            data = adding(rng, batch, length)
            x = torch.from_numpy(np.stack(data.sequences))  # (N, L, 2)
            y = torch.from_numpy(np.asarray(data.targets))  # (N,)
            out, _ = rnn(x)
            loss = F.mse_loss(head(out[:, -1]).squeeze(-1), y)
            if not torch.isfinite(loss):
                break
            losses[step] = float(loss.detach())
            optimiser.zero_grad()
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(params, clip)
            optimiser.step()
        curves[clip] = losses
    return curves


# -- pictures -------------------------------------------------------------------------------
def plot_profiles(profiles: list[LagProfile], path, title: str, layer: int = -1, relative: bool = False,
                  references: dict[str, np.ndarray] | None = None) -> None:
    """One line per profile: mean |dL_T/dh_k| (log scale) against lag T − k.

    relative: divide each by its value at lag 0. references: label -> values (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    for p in profiles:
        norms = p.norms[layer] / (p.norms[layer][0] if relative else 1.0)
        keep = (p.counts > 0) & (norms > 0)
        ax.semilogy(p.lags[keep], norms[keep], label=p.label)
    for label, values in (references or {}).items():
        ax.semilogy(np.arange(len(values)), values, "k--", linewidth=0.8, alpha=0.6, label=label)
    ax.set_xlabel("lag T − k (steps)")
    ax.set_ylabel("mean ‖∂L_T / ∂h_k‖" + (" ÷ its value at lag 0" if relative else ""))
    _finish(fig, ax, path, title)


def _finish(fig, ax, path, title: str) -> None:
    """Title, log grid and legend; write the PNG and free the figure."""
    import matplotlib.pyplot as plt

    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_curves(curves: dict[float, np.ndarray], path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    for clip, losses in curves.items():
        steps = np.arange(len(losses))
        label = "no clipping" if clip == 0 else f"clip_norm {clip:g}"
        ended = np.isnan(losses).any()
        if ended:
            label += f" (diverged at step {int(np.argmax(np.isnan(losses)))})"
        ax.semilogy(steps, losses, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (MSE)")
    _finish(fig, ax, path, title)
