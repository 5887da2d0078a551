"""What a task hands the trainer (`Batch`) and gets back from its loss (`LossOutput`)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch


def move_to(obj: Any, device: torch.device) -> Any:
    """`obj` with every tensor inside (tuples, lists, dicts, dataclasses) moved to `device`."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # NamedTuple
        return type(obj)(*(move_to(v, device) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to(v, device) for v in obj)
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: move_to(getattr(obj, f.name), device)
                                           for f in dataclasses.fields(obj) if f.init})
    return obj


def slice_rows(obj: Any, rows: slice) -> Any:
    """`obj` with every tensor inside cut to `rows` along dimension 0 (the batch)."""
    if isinstance(obj, torch.Tensor):
        return obj[rows] if obj.dim() > 0 else obj
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(slice_rows(v, rows) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(slice_rows(v, rows) for v in obj)
    if isinstance(obj, dict):
        return {k: slice_rows(v, rows) for k, v in obj.items()}
    return obj


@dataclass
class Batch:
    """One training or evaluation batch.

    Fields:
        inputs: a tensor (N, L, ...) or any tuple/dict of tensors with the batch first.
        targets: the same for the targets.
        reset: (N, L) bool or None: True at step t where a new document starts, so the
            stream's carried state is zeroed before step t (streamed tasks).
        lengths: (N,) real lengths of padded sequences, or None.
        carry: True for a chunk of a stream: the final state is detached and handed to
            the next batch. False: every batch starts from a zero state (full BPTT).
        size: the number of items the loss averages over (tokens, sequences); metrics
            are averaged over batches with this weight. Default: targets.numel().
    """

    inputs: Any
    targets: Any = None
    reset: torch.Tensor | None = None
    lengths: torch.Tensor | None = None
    carry: bool = False
    size: int | None = None

    @property
    def num_items(self) -> int:
        if self.size is not None:
            return int(self.size)
        if isinstance(self.targets, torch.Tensor):
            return self.targets.numel()
        raise ValueError("Batch.size is needed when targets is not a single tensor")

    @property
    def batch_size(self) -> int:
        first = self.inputs
        while not isinstance(first, torch.Tensor):
            first = next(iter(first.values() if isinstance(first, dict) else first))
        return first.shape[0]

    def to(self, device: torch.device) -> "Batch":
        return move_to(self, device)

    def shard(self, rank: int, world_size: int) -> "Batch":
        """This rank's contiguous block of rows for data-parallel training.

        Ranks 0..W-1 take rows [r·N/W, (r+1)·N/W): together they make up the global
        batch, so W processes train as one process on the whole batch.
        """
        if world_size == 1:
            return self
        n = self.batch_size
        if n % world_size:
            raise ValueError(f"a batch of {n} rows cannot be split evenly over {world_size} processes; "
                             f"choose a batch size divisible by {world_size}")
        per = n // world_size
        rows = slice(rank * per, (rank + 1) * per)
        size = None if self.size is None else self.size // world_size
        return Batch(inputs=slice_rows(self.inputs, rows), targets=slice_rows(self.targets, rows),
                     reset=slice_rows(self.reset, rows), lengths=slice_rows(self.lengths, rows),
                     carry=self.carry, size=size)


class LossOutput(NamedTuple):
    """What `Task.compute_loss` returns.

    loss: scalar tensor, the mean over the batch's `size` items (what is minimised).
    metrics: name -> per-item mean (float or 0-d tensor), averaged over batches with
        weight `Batch.size`; "loss" is added by the trainer.
    state: the final recurrent state (carried to the next chunk when `Batch.carry`), or None.
    """

    loss: torch.Tensor
    metrics: dict
    state: Any = None
