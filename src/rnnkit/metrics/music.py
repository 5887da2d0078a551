"""Polyphonic music metrics: Bernoulli negative log-likelihood per frame and per note, frame accuracy.

A model gives, at every frame t, 88 independent probabilities p_tk = σ(logit_tk) that key k
sounds. The negative log-likelihood of the frame's keys y_tk ∈ {0, 1} is

    NLL_t = − Σ_k [ y_tk log p_tk + (1 − y_tk) log(1 − p_tk) ]      nats, summed over the 88 keys

and the reported figure is its mean over the real frames of a split, the normalisation of
Boulanger-Lewandowski et al. 2012 and Chung et al. 2014 ("negative log-likelihood per time
step"; JSB Chorales figures such as 8.54 are in these units). Per note is that divided by
88 (the mean over key-frames).

Frame-level accuracy (Boulanger-Lewandowski et al. 2012, after Bay et al. 2009): with
keys predicted on where p_tk > threshold (0.5),

    ACC = TP / (TP + FP + FN)

counted over every frame of the split together (true negatives, the silent keys, do not count).
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

KEYS = 88


def frame_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """NLL per frame in nats, summed over keys.

    logits: (..., K) pre-sigmoid scores; targets: (..., K) 0/1. Returns (...,).
    Computed as binary cross-entropy with logits (stable for large |logit|).
    """
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none").sum(-1)


def frame_counts(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None,
                 threshold: float = 0.5) -> torch.Tensor:
    """(TP, FP, FN) as a (3,) float64 tensor, keys predicted on where σ(logit) > threshold.

    logits, targets: (..., K); mask: (...) bool, the real frames (None: all).
    """
    return predicted_counts(torch.sigmoid(logits.float()) > threshold, targets, mask)


def predicted_counts(predicted: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(TP, FP, FN) as a (3,) float64 tensor of frames already decided: predicted (..., K) bool or 0/1."""
    predicted = predicted > 0.5 if predicted.dtype != torch.bool else predicted
    actual = targets > 0.5
    if mask is not None:
        keep = mask[..., None]
        predicted, actual = predicted & keep, actual & keep
    tp = (predicted & actual).sum()
    fp = (predicted & ~actual).sum()
    fn = (~predicted & actual).sum()
    return torch.stack([tp, fp, fn]).double()


def frame_accuracy(tp: float, fp: float, fn: float) -> float:
    """TP / (TP + FP + FN); 1.0 when there is nothing to predict nor predicted (all silent)."""
    total = tp + fp + fn
    return float(tp / total) if total else 1.0


def music_metrics(nll_per_frame: float, keys: int = KEYS) -> dict[str, float]:
    """The derived figures of a mean per-frame NLL: per note (per key-frame) in nats and bits."""
    per_note = nll_per_frame / keys
    return {"nll_per_frame": nll_per_frame, "nll_per_note": per_note,
            "bits_per_note": per_note / float(torch.log(torch.tensor(2.0)))}
