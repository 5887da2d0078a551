"""`tag`: aligned many-to-many, a label at every real step of a sequence.

    rnnkit train configs/parity.yaml            # the running parity (XOR of the bits so far)
    rnnkit train configs/copy.yaml              # recall S symbols after a delay
    rnnkit eval runs/parity --split test        # per-step accuracy, macro P/R/F1, confusion, sequence accuracy

Everything is the `classify` task's (rnnkit.tasks.classify: sources, splits, scaling,
model options, predictions) except the shape of the answer: the model is
`rnnkit.models.SequenceTagger` (or `WindowMLP` with a window ending at each step),
the loss is the cross-entropy averaged over the labelled steps, and padded steps (and
steps labelled IGNORE, such as copy's non-recall steps) count nowhere. Sources with
step labels: `parity` (running parity), `copy`, and `file` (a label per CSV row, or
y (N, L) in an .npz). `model.pooling` is not used.
Validation adds `sequence_accuracy`: the share of sequences with every step right.
"""
from __future__ import annotations

from .classify import Classify
from .registry import register_task


@register_task("tag")
class Tag(Classify):
    """A prediction at every step; see the module docstring."""

    unit = "step"
    per_step = True
