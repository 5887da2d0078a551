"""Truncated backpropagation through time: carried state, resets, stream chunks.

A long token stream is cut into N parallel streams and each stream into chunks of
`bptt` steps. The trainer feeds chunk k with the final state of chunk k-1,
*detached*, so gradients stop at chunk boundaries and memory stays that of one
chunk however long the stream is. Where a document ends inside a stream, the
state of that stream is zeroed before the next document's first step
(`reset` masks; `run_with_resets`).

State is what `rnnkit.layers.Recurrent` (and torch.nn.LSTM/GRU/RNN) takes and
returns: a tuple of (layers·dirs, N, H) tensors, or a single tensor (torch GRU/RNN).
"""
from __future__ import annotations

from typing import Iterator

import torch

from .batch import Batch

State = tuple[torch.Tensor, ...] | torch.Tensor | None


def detach_state(state: State) -> State:
    """Cut the graph at a chunk boundary: the same values, no history. None stays None."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return tuple(detach_state(s) for s in state)


def mask_state(state: State, keep: torch.Tensor) -> State:
    """Zero the state of the streams where `keep` (N,) is False.

    Each tensor is (layers·dirs, N, H): the batch is dimension 1. A multiply
    (not an in-place write) keeps the autograd graph valid.
    """
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state * keep.view(1, -1, 1).to(state.dtype)
    return tuple(mask_state(s, keep) for s in state)


def run_with_resets(layer, x: torch.Tensor, state: State = None,
                    reset: torch.Tensor | None = None):
    """Run a recurrent `layer` over a chunk, zeroing each stream's state where it resets.

    Args:
        layer: callable `layer(x, state) -> (outputs, state)` with batch-first input
            (rnnkit.layers.Recurrent, or torch.nn.LSTM/GRU/RNN with batch_first=True).
        x: (N, L, D) inputs. state: the carried state or None (zeros).
        reset: (N, L) bool, True at step t when a new document starts there: the
            stream's state is zeroed before step t. None: no resets.

    Returns:
        (outputs (N, L, H·dirs), final state). The chunk is split only at the
        columns where some stream resets, so the layer's fused kernel still runs
        over each piece.
    """
    if reset is None or not bool(reset.any()):
        return layer(x, state)
    length = x.shape[1]
    cuts = sorted({0, *torch.nonzero(reset.any(0)).flatten().tolist()}) + [length]
    outputs = []
    for start, end in zip(cuts[:-1], cuts[1:]):
        state = mask_state(state, ~reset[:, start])
        out, state = layer(x[:, start:end], state)  # (N, end-start, H·dirs)
        outputs.append(out)
    return torch.cat(outputs, dim=1), state


class StreamBatches:
    """(N, bptt) chunks of a token stream cut into N parallel streams, for truncated BPTT.

    The stream of T tokens is trimmed to N·S + 1 tokens and laid out as N rows of S
    steps (row i continues where it left off in the next chunk). Chunk k holds
    inputs x[:, k·bptt:(k+1)·bptt] and targets shifted by one. With
    `starts` (T,) bool marking each document's first token, each chunk carries
    `reset` (N, bptt): True where the input token starts a new document.

    Iterating yields `Batch` objects with `carry=True`; `len()` is the
    number of chunks (the last may be shorter than bptt). Deterministic: no
    randomness at all.
    """

    def __init__(self, tokens: torch.Tensor, batch_size: int, bptt: int,
                 starts: torch.Tensor | None = None):
        if tokens.dim() != 1:
            raise ValueError(f"tokens: expected a 1-D stream, got shape {tuple(tokens.shape)}")
        if bptt < 1:
            raise ValueError(f"bptt must be >= 1 for a stream, got {bptt}")
        steps = (tokens.numel() - 1) // batch_size
        if steps < 1:
            raise ValueError(f"a stream of {tokens.numel()} tokens is too short for {batch_size} streams")
        used = steps * batch_size
        self.inputs = tokens[:used].view(batch_size, steps)  # (N, S)
        self.targets = tokens[1:used + 1].view(batch_size, steps)  # (N, S)
        self.starts = None if starts is None else starts[:used].view(batch_size, steps).bool()
        self.streams, self.bptt = batch_size, bptt
        self.steps = steps

    def __len__(self) -> int:
        return -(-self.steps // self.bptt)

    def __getitem__(self, k: int):
        if not 0 <= k < len(self):
            raise IndexError(k)
        cols = slice(k * self.bptt, min((k + 1) * self.bptt, self.steps))
        reset = None if self.starts is None else self.starts[:, cols]
        x = self.inputs[:, cols]
        return Batch(inputs=x, targets=self.targets[:, cols], reset=reset, carry=True, size=x.numel())

    def __iter__(self) -> Iterator:
        return (self[k] for k in range(len(self)))
