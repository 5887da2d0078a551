"""Dynamic evaluation (Krause et al. 2018): a language model that keeps learning while it is scored.

Each chunk of the evaluated stream is first scored with the current weights (the
figure reported is that score, made before the model has seen the chunk), then
the weights take one gradient step on that chunk, so later text is predicted by a
model adapted to what came before it: the identifiers of the file being read,
the table it is in the middle of. The recurrent state is carried across chunks
as in static evaluation. Two update rules:

- ``sgd``: θ ← θ − η·g + λ·(θ₀ − θ)
- ``rms`` (the paper's "RMS with a global prior"): θ ← θ − η·g / (√MS + ε)
  + λ·(θ₀ − θ) ⊙ min(1/λ, √MS / mean √MS), where MS is the mean squared gradient
  of the trained weights over the first `rms_batches` training chunks, so each
  weight moves in proportion to how much training moved it.

θ₀ are the trained weights, restored when the evaluation ends. Dropout is off.

    rnnkit eval runs/charlm-stdlib --split test --dynamic --dynamic-lr 1e-4 --streams 8 --bptt 50
"""
from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from .batch import Batch
from .device import autocast
from .tbptt import detach_state

RULES = ("rms", "sgd")


@dataclass(frozen=True)
class DynamicConfig:
    """The update rule and its step size η, decay λ toward the trained weights, and ε.

    rms_floor: the rms rule's gradient RMS is raised to at least this fraction of its
    tensor's mean. An entry the training chunks never moved (the embedding row of a
    token they did not hold) would otherwise get a step of η / ε when the scored text
    has that token.
    """

    rule: str = "rms"
    lr: float = 2e-5
    decay: float = 0.0
    eps: float = 1e-8
    rms_batches: int = 50
    rms_floor: float = 0.0

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"dynamic evaluation: unknown rule {self.rule!r} (choose from {', '.join(RULES)})")
        if not self.lr > 0:
            raise ValueError(f"dynamic evaluation: the step size must be > 0, got {self.lr}")
        if not 0 <= self.decay < 1:
            raise ValueError(f"dynamic evaluation: the decay must be in [0, 1), got {self.decay}")
        if not 0 <= self.rms_floor <= 1:
            raise ValueError(f"dynamic evaluation: the rms floor must be in [0, 1], got {self.rms_floor}")
        if self.rule == "rms" and self.rms_batches < 1:
            raise ValueError(f"dynamic evaluation: rule 'rms' needs rms_batches >= 1, got {self.rms_batches}")


def _no_cudnn(device: torch.device):
    """cuDNN's RNN backward refuses eval mode; torch's own kernels do not."""
    if device.type == "cuda":
        return torch.backends.cudnn.flags(enabled=False)
    return contextlib.nullcontext()


def _chunk_gradients(task, model, batch: Batch, state, device, precision):
    """Loss of `batch` from `state`; gradients of it left in the parameters' .grad."""
    model.zero_grad(set_to_none=True)
    with _no_cudnn(device), autocast(device, precision):
        out = task.compute_loss(model, batch, state)
    out.loss.backward()
    return out


def mean_square_gradients(task, model: nn.Module, batches: Iterable[Batch], num_batches: int, *,
                          device: torch.device, precision: str = "fp32") -> list[torch.Tensor]:
    """Mean over `num_batches` chunks of each parameter's squared gradient (the rule 'rms''s MS)."""
    params = [p for p in model.parameters() if p.requires_grad]
    sums = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    seen, state = 0, None
    for batch in itertools.islice(batches, num_batches):
        batch = batch.to(device)
        if not batch.carry:
            state = None
        out = _chunk_gradients(task, model, batch, state, device, precision)
        for s, p in zip(sums, params):
            if p.grad is not None:
                s.add_(p.grad.float().square())
        state = detach_state(out.state) if batch.carry else None
        seen += 1
    if seen == 0:
        raise ValueError("dynamic evaluation: no training batches to measure gradient scales on")
    model.zero_grad(set_to_none=True)
    return [s / seen for s in sums]


def dynamic_evaluate(task, model: nn.Module, batches: Iterable[Batch], config: DynamicConfig, *,
                     device: torch.device, precision: str = "fp32",
                     mean_squares: list[torch.Tensor] | None = None) -> dict[str, float]:
    """Score `batches` in order, adapting `model` after each; returns `task.summarize(means)`.

    The weights are restored to their trained values before returning. `mean_squares`
    (one tensor per trainable parameter, from `mean_square_gradients`) is required by
    the 'rms' rule.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if config.rule == "rms":
        if mean_squares is None or len(mean_squares) != len(params):
            raise ValueError("dynamic evaluation: rule 'rms' needs the training gradients' mean squares")
        rms = [ms.sqrt() for ms in mean_squares]
        if config.rms_floor:
            rms = [torch.maximum(r, config.rms_floor * r.mean()) for r in rms]
        scale = [1.0 / (r + config.eps) for r in rms]
        mean_rms = torch.cat([r.flatten() for r in rms]).mean()
        prior_weight = [(config.decay * r / mean_rms).clamp(max=1.0) for r in rms]
    else:
        scale = None
        prior_weight = [config.decay] * len(params)
    trained = [p.detach().clone() for p in params]
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    weight, state = 0.0, None
    try:
        for batch in batches:
            batch = batch.to(device)
            if not batch.carry:
                state = None
            out = _chunk_gradients(task, model, batch, state, device, precision)
            n = batch.num_items
            for key, value in {"loss": out.loss, **out.metrics}.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach() if torch.is_tensor(value) else value) * n
            weight += n
            with torch.no_grad():
                for i, (p, p0) in enumerate(zip(params, trained)):
                    if p.grad is not None:
                        step = p.grad if scale is None else p.grad * scale[i]
                        p.sub_(config.lr * step)
                    if config.decay:
                        p.add_((p0 - p) * prior_weight[i])
            state = detach_state(out.state) if batch.carry else None
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, trained):
                p.copy_(p0)
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if weight == 0:
        return {}
    means = {k: v / weight for k, v in sums.items()}
    return task.summarize({"loss": means.pop("loss"), **means})
