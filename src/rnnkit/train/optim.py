"""Optimisers, learning-rate schedules and gradient clipping."""
from __future__ import annotations

import math
from typing import Iterable

import torch

from ..config import OptimConfig, ScheduleConfig


def build_optimizer(cfg: OptimConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The torch.optim optimiser named by `cfg.name`, with the options that apply to it."""
    params = [p for p in params if p.requires_grad]
    wd = cfg.weight_decay
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=wd)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=wd)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=wd)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps,
                                   momentum=cfg.momentum, weight_decay=wd)
    if cfg.name == "adadelta":
        return torch.optim.Adadelta(params, lr=cfg.lr, rho=cfg.rho, eps=cfg.eps, weight_decay=wd)
    if cfg.name == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.lr, eps=cfg.eps, weight_decay=wd)
    raise ValueError(f"optim.name = {cfg.name!r}: unknown optimiser")


class Schedule:
    """The learning rate at every step: a shape (constant, step, plateau, cosine) times a warm-up.

    lr(step) = base · warmup(step) · shape, where
      warmup(step) = min(1, (step + 1) / warmup_steps)        (1 without warm-up)
      constant: 1
      step:     gamma ^ k, k = 0 before epoch `decay_after` ends, then one more
                factor every `decay_every` epochs (char-rnn's learning_rate_decay)
      plateau:  gamma ^ (number of plateaus seen), floored at min_lr
      cosine:   min_lr/base + (1 - min_lr/base) · (1 + cos(π·p)) / 2,
                p = (step - warmup) / (total - warmup) clipped to [0, 1]
    `step` counts optimiser steps from 0. The trainer calls `end_epoch` after each
    epoch and `observe` after each evaluation. All state is in `state_dict()`.
    """

    def __init__(self, cfg: ScheduleConfig, base_lr: float, max_steps: int = 0,
                 mode: str = "min", min_delta: float = 0.0):
        self.cfg, self.base_lr, self.mode, self.min_delta = cfg, base_lr, mode, min_delta
        self.total = cfg.total_steps or max_steps
        self.epochs_done = 0
        self.plateau_factor = 1.0
        self.plateau_best: float | None = None
        self.plateau_bad = 0

    def lr(self, step: int) -> float:
        cfg = self.cfg
        warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        if cfg.name == "constant":
            shape = 1.0
        elif cfg.name == "step":
            k = 0 if self.epochs_done < cfg.decay_after else 1 + (self.epochs_done - cfg.decay_after) // cfg.decay_every
            shape = cfg.gamma ** k
        elif cfg.name == "plateau":
            shape = max(self.plateau_factor, cfg.min_lr / self.base_lr)
        else:  # cosine
            span = max(1, self.total - cfg.warmup_steps)
            p = min(1.0, max(0.0, (step - cfg.warmup_steps) / span))
            floor = cfg.min_lr / self.base_lr
            shape = floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))
        return self.base_lr * warm * shape

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every parameter group's lr for optimiser step `step`; return it."""
        lr = self.lr(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def end_epoch(self, epochs_done: int) -> None:
        self.epochs_done = epochs_done

    def observe(self, value: float) -> None:
        """A validation result: the plateau schedule decays after `patience` evaluations without improvement."""
        if self.cfg.name != "plateau":
            return
        if self.plateau_best is None or improved(value, self.plateau_best, self.mode, self.min_delta):
            self.plateau_best, self.plateau_bad = value, 0
            return
        self.plateau_bad += 1
        if self.plateau_bad > self.cfg.patience:
            self.plateau_factor *= self.cfg.gamma
            self.plateau_bad = 0

    def state_dict(self) -> dict:
        return {"epochs_done": self.epochs_done, "plateau_factor": self.plateau_factor,
                "plateau_best": self.plateau_best, "plateau_bad": self.plateau_bad}

    def load_state_dict(self, state: dict) -> None:
        self.epochs_done = int(state["epochs_done"])
        self.plateau_factor = float(state["plateau_factor"])
        self.plateau_best = None if state["plateau_best"] is None else float(state["plateau_best"])
        self.plateau_bad = int(state["plateau_bad"])


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether `value` beats `best` by more than `min_delta` ('min': lower is better)."""
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


@torch.no_grad()
def clip_gradients(params: Iterable[torch.nn.Parameter], clip_norm: float = 0.0,
                   clip_value: float = 0.0) -> torch.Tensor:
    """Clip gradients in place; return the global gradient norm measured before any clipping.

    clip_value > 0: clamp each element to [-clip_value, clip_value] (value clipping).
    clip_norm > 0: norm clipping over all parameters at once (Pascanu et al. 2013):
        if ‖g‖ > u then g ← g · u / ‖g‖, with ‖g‖ the L2 norm of every gradient
        concatenated (after value clipping, if any), so the direction is kept.
    The returned norm is the 0-d tensor ‖g‖ before either clipping (NaN/Inf when a
    gradient is not finite).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norms = torch._foreach_norm(grads, 2.0)
    pre_clip = torch.linalg.vector_norm(torch.stack([n.to(grads[0].device) for n in norms]), 2.0)
    total = pre_clip
    if clip_value > 0:
        torch._foreach_clamp_min_(grads, -clip_value)
        torch._foreach_clamp_max_(grads, clip_value)
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    if clip_norm > 0 and bool(torch.isfinite(total)) and float(total) > clip_norm:
        torch._foreach_mul_(grads, clip_norm / float(total))
    return pre_clip
