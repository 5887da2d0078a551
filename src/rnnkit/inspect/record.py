"""Recording what a recurrent model computes: hidden states, cell states and gates per
layer, direction and step, for a forward pass of any model built on `Recurrent`.

    with record(model) as rec:                 # every Recurrent inside `model`
        logits, state = model(tokens)          # runs as usual, the values are recorded
    trace = rec.trace()                        # the one Recurrent's Trace
    h = trace.get("h", layer=1)                # (N, L, H): what layer 1 computed at every step
    c, f = trace["c"], trace["f"]              # (layers, dirs, N, L, H)

There is no second implementation of the forward pass: while recording, each
`Recurrent` runs its reference loop (the loop every fast path is tested against) and
reports the state after every step, and the cells report the gate activations they
used (`Cell.gate_observer`). The recorded values are therefore the values this very
forward pass computed; its outputs equal the unrecorded model's up to float rounding
(tests/test_inspect_record.py). Without `record` nothing changes: the fused and C++
paths run as always.

Kinds: the cell's state names (`h`, and `c` for LSTM) and its gates: LSTM `i, f, g, o`
(those the variant has), GRU `r, z, n`; Elman cells have only `h`.
Several forward calls inside one `record` (a long text fed in chunks with the state
carried) are joined along time. Padded steps (lengths < L) are recorded as zeros, as
`Recurrent` outputs them. With `detach=False` the recorded step tensors stay in the
autograd graph (`Recording.step_tensors`), which is how `rnnkit.inspect.gradients`
measures dL/dh_k.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import partial

import torch
from torch import nn

from ..cells.gru import GRUCell
from ..layers import Recurrent
from ..layers.recurrent import _reverse  # the layer's own per-sequence reversal

GATE_KINDS = ("i", "f", "g", "o", "r", "z", "n")


class Trace:
    """What one `Recurrent` computed, kind by kind.

    `trace[kind]`: (layers, dirs, N, L, H) float tensor, time in input order for both
    directions (the backward direction is turned back). `get(kind, layer, direction)`:
    (N, L, H). `lengths`: (N,) real steps of each sequence. `kinds`: what was recorded.
    """

    def __init__(self, name: str, values: dict[str, torch.Tensor], lengths: torch.Tensor):
        self.name = name
        self.values = values
        self.lengths = lengths

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.values)

    @property
    def num_layers(self) -> int:
        return next(iter(self.values.values())).shape[0]

    @property
    def num_directions(self) -> int:
        return next(iter(self.values.values())).shape[1]

    def __getitem__(self, kind: str) -> torch.Tensor:
        if kind not in self.values:
            raise KeyError(f"{self.name}: nothing recorded for {kind!r}; recorded: {', '.join(self.kinds)}")
        return self.values[kind]

    def get(self, kind: str, layer: int, direction: int = 0) -> torch.Tensor:
        """(N, L, H) values of `kind` in `layer` (0-based), `direction` (0 forward, 1 backward)."""
        values = self[kind]
        if not 0 <= layer < values.shape[0]:
            raise IndexError(f"{self.name}: layer {layer} out of range 0..{values.shape[0] - 1}")
        if not 0 <= direction < values.shape[1]:
            raise IndexError(f"{self.name}: direction {direction} out of range 0..{values.shape[1] - 1}")
        return values[layer, direction]


class _LayerRecorder:
    """Installed as `Recurrent.recorder` (and each cell's `gate_observer`) while recording."""

    def __init__(self, module: Recurrent, kinds: set[str] | None, detach: bool):
        self.module = module
        self.kinds = kinds
        self.detach = detach
        self.calls: list[dict] = []
        self._gates: dict[int, dict[str, torch.Tensor]] = {}

    def begin(self, lengths, L: int, N: int) -> None:
        """A forward call starts: L steps of N sequences (lengths None: all L)."""
        self.calls.append({"lengths": lengths, "L": L, "N": N, "steps": {}})

    def gates(self, k: int, gates: dict[str, torch.Tensor]) -> None:
        self._gates[k] = gates

    def step(self, k: int, t: int, state: tuple[torch.Tensor, ...]) -> None:
        """Cell k finished step t of the current call with this state."""
        values = dict(zip(self.module.state_names, state))
        values.update(self._gates.pop(k, {}))
        steps = self.calls[-1]["steps"].setdefault(k, {})
        for kind, value in values.items():
            if self.kinds is None or kind in self.kinds:
                steps.setdefault(kind, []).append(value.detach() if self.detach else value)

    def trace(self, name: str) -> Trace:
        if not self.calls:
            raise RuntimeError(f"{name}: no forward pass ran while recording")
        if len({call["N"] for call in self.calls}) > 1:
            raise ValueError(f"{name}: the recorded forward calls have different batch sizes "
                             f"{sorted({call['N'] for call in self.calls})}; record each batch separately")
        m = self.module
        if not self.calls[0]["steps"].get(0):
            raise ValueError(f"{name}: nothing recorded: kinds {sorted(self.kinds)} are none of this cell's "
                             f"{', '.join(m.state_names + _gate_names(m.cells[0]))}")
        dirs = m.num_directions
        per_call, all_lengths = [], []
        for call in self.calls:
            L, N, lengths = call["L"], call["N"], call["lengths"]
            device = next(iter(call["steps"][0].values()))[0].device
            mask = None
            if lengths is not None:
                lengths = lengths.to(device)
                mask = (torch.arange(L, device=device)[:, None] < lengths[None, :]).unsqueeze(-1)  # (L, N, 1)
            kinds = call["steps"][0].keys()
            values = {}
            for kind in kinds:
                cells = []
                for k in range(m.num_layers * dirs):
                    seq = torch.stack(call["steps"][k][kind]).detach()  # (L, N, H)
                    if mask is not None:
                        seq = seq.masked_fill(~mask, 0.0)
                    if k % dirs == 1:  # the backward direction ran over each sequence reversed
                        seq = _reverse(seq, lengths)
                    cells.append(seq.transpose(0, 1))  # (N, L, H)
                values[kind] = torch.stack(cells).unflatten(0, (m.num_layers, dirs))  # (layers, dirs, N, L, H)
            per_call.append(values)
            all_lengths.append(torch.full((N,), L) if lengths is None else lengths.cpu())
        joined = {kind: torch.cat([v[kind] for v in per_call], dim=3) for kind in per_call[0]}
        return Trace(name, joined, torch.stack(all_lengths).sum(0))


def _gate_names(cell) -> tuple[str, ...]:
    """The gates a cell reports (LSTM: those its variant has; GRU: r, z, n; others none)."""
    spec = getattr(cell, "spec", None)
    if spec is not None:
        return tuple(spec.gates) + (("f",) if spec.coupled else ())
    return ("r", "z", "n") if isinstance(cell, GRUCell) else ()


class Recording:
    """The result of `record`: one `Trace` per recorded `Recurrent` (by module name)."""

    def __init__(self, recorders: dict[str, _LayerRecorder]):
        self._recorders = recorders

    @property
    def names(self) -> list[str]:
        return list(self._recorders)

    def trace(self, name: str | None = None) -> Trace:
        """The Trace of the Recurrent called `name` (module path; optional when there is one)."""
        return self._recorders[self._name(name)].trace(self._name(name) or "<model>")

    def module(self, name: str | None = None) -> Recurrent:
        """The recorded Recurrent called `name` (optional when there is one)."""
        return self._recorders[self._name(name)].module

    def step_tensors(self, kind: str = "h", name: str | None = None, call: int = -1) -> dict[int, list[torch.Tensor]]:
        """The recorded tensors themselves (in the graph with detach=False): cell index
        k = layer·dirs + direction -> one (N, H) tensor per step of that direction's own loop
        (the backward direction's list runs backward in time)."""
        recorder = self._recorders[self._name(name)]
        if not recorder.calls:
            raise RuntimeError("no forward pass ran while recording")
        steps = recorder.calls[call]["steps"]
        if kind not in steps[0]:
            raise KeyError(f"nothing recorded for {kind!r}; recorded: {', '.join(steps[0])}")
        return {k: v[kind] for k, v in steps.items()}

    def _name(self, name: str | None) -> str:
        if name is None:
            if len(self._recorders) != 1:
                raise ValueError(f"the model has {len(self._recorders)} Recurrent layers "
                                 f"({', '.join(map(repr, self._recorders))}); name one")
            return next(iter(self._recorders))
        if name not in self._recorders:
            raise KeyError(f"no Recurrent called {name!r}; recorded: {', '.join(map(repr, self._recorders))}")
        return name


@contextmanager
def record(model: nn.Module, kinds=None, detach: bool = True):
    """Record every `Recurrent` inside `model` (or `model` itself) while the block runs.

    Args:
        model: any module; each `Recurrent` in it is recorded under its module path
            ("" for the model itself).
        kinds: which of the state names and gates to keep (None: all), e.g. ("h", "c").
        detach: keep detached copies (True) or the graph's own tensors (False, for gradients).
    Yields a `Recording`; its traces are complete when the block ends.
    """
    layers = {name: m for name, m in model.named_modules() if isinstance(m, Recurrent)}
    if not layers:
        raise ValueError(f"{type(model).__name__} contains no rnnkit Recurrent layer to record")
    kinds = None if kinds is None else set(kinds)
    recorders = {}
    try:
        for name, layer in layers.items():
            if layer.recorder is not None:
                raise RuntimeError(f"Recurrent {name!r} is already being recorded")
            recorder = _LayerRecorder(layer, kinds, detach)
            layer.recorder = recorder
            for k, cell in enumerate(layer.cells):
                cell.gate_observer = partial(recorder.gates, k)
            recorders[name] = recorder
        yield Recording(recorders)
    finally:
        for name in recorders:
            layer = layers[name]
            del layer.recorder  # back to the class attribute None
            for cell in layer.cells:
                del cell.gate_observer
