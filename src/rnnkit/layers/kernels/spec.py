"""What the recurrence kernels need to know about a cell: its equations as a few flags,
and its parameters as the tensors the loops read.

Every cell the kernels cover has the same outline per step t (0-based, h_t the
state after step t, h_{-1} the initial state):

    pre_t = xp_t + h_{t-1} @ W_hh^T [+ h_{t-d} @ W_skip^T] [+ g_{t-1} @ W_gg4^T]
    state_t = cell's elementwise math on pre_t and state_{t-1}

with the GRU's two exceptions (its reset gate sits inside the recurrent product)
handled by the kernels themselves. `describe(cell)` returns a `KernelSpec` and the
parameter tensors, or None when the cell is one the kernels do not know (a cell
registered by a user): `Recurrent` then runs its Python loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# Kinds, in the order of the C++ `Kind` enum (csrc/recurrence.cpp).
KINDS = ("lstm", "gru", "gru_original", "rnn_tanh", "rnn_relu", "additive")

# LSTM flag bits, the same in csrc/recurrence.cpp.
PEEP_I, PEEP_F, PEEP_O, NO_INPUT_ACT, NO_OUTPUT_ACT, COUPLED, GATE_RECURRENCE = (1 << k for k in range(7))


@dataclass(frozen=True)
class KernelSpec:
    """The equations of one cell, as the kernels read them.

    kind: one of KINDS. hidden_size: H. num_gates: G (blocks of xp, width G·H).
    gates: LSTM blocks present, in weight order (a subset of "ifgo"); "" otherwise.
    flags: LSTM flag bits (PEEP_I, ..., GATE_RECURRENCE). skip: d (0: none).
    """

    kind: str
    hidden_size: int
    num_gates: int
    gates: str = ""
    flags: int = 0
    skip: int = 0

    @property
    def kind_code(self) -> int:
        return KINDS.index(self.kind)

    @property
    def has_cell_state(self) -> bool:
        return self.kind == "lstm"

    @property
    def gate_recurrence(self) -> bool:
        return bool(self.flags & GATE_RECURRENCE)

    def block(self, gate: str) -> int:
        """Index of an LSTM gate block in xp, or -1 when the variant has none."""
        return self.gates.find(gate)

    @property
    def saved_width(self) -> int:
        """Width of what the forward loop saves per step for backward (in units of H):
        LSTM its G gate activations; GRU r, z, n and the recurrent n-product
        (standard) or r, z, n (original); Elman and additive nothing beyond h."""
        return {"lstm": self.num_gates, "gru": 4, "gru_original": 3}.get(self.kind, 0)


@dataclass
class KernelParams:
    """The tensors a kernel reads (None where the cell has none).

    weight_hh (G·H, H); bias_rec (H,): GRU's b_nh, inside the reset gate;
    weight_skip (G·H, H); peep (3, H) rows i, f, o (zero rows where absent);
    weight_gate (4H, 3H): FGR's weight_gate_hh with a zero block row for g, so that
    g_{t-1} @ weight_gate^T lands on the i, f, o blocks of pre_t in one product.
    """

    weight_hh: torch.Tensor | None = None
    bias_rec: torch.Tensor | None = None
    weight_skip: torch.Tensor | None = None
    peep: torch.Tensor | None = None
    weight_gate: torch.Tensor | None = None

    def as_tuple(self):
        return (self.weight_hh, self.bias_rec, self.weight_skip, self.peep, self.weight_gate)


def describe(cell, skip: int = 0, weight_skip: torch.Tensor | None = None):
    """(KernelSpec, KernelParams) for an rnnkit cell, or None if the kernels don't cover it."""
    from ...cells import AdditiveCell, ElmanCell, GRUCell, LSTMCell

    H = cell.hidden_size
    kind = type(cell)
    params = KernelParams(weight_skip=weight_skip if skip else None)
    if kind is AdditiveCell:
        return KernelSpec("additive", H, 1, skip=skip), params
    if kind is ElmanCell:
        params.weight_hh = cell.weight_hh
        return KernelSpec(f"rnn_{cell.nonlinearity}", H, 1, skip=skip), params
    if kind is GRUCell:
        params.weight_hh = cell.weight_hh
        if cell.variant == "standard":
            params.bias_rec = cell.bias_hh[2 * H:]
            return KernelSpec("gru", H, 3, skip=skip), params
        return KernelSpec("gru_original", H, 3, skip=skip), params
    if kind is LSTMCell:
        spec = cell.spec
        flags = sum(bit for gate, bit in zip("ifo", (PEEP_I, PEEP_F, PEEP_O)) if gate in spec.peepholes)
        flags |= (0 if spec.input_activation else NO_INPUT_ACT)
        flags |= (0 if spec.output_activation else NO_OUTPUT_ACT)
        flags |= (COUPLED if spec.coupled else 0) | (GATE_RECURRENCE if spec.gate_recurrence else 0)
        params.weight_hh = cell.weight_hh
        if spec.peepholes:
            zeros = cell.weight_hh.new_zeros(H)
            params.peep = torch.stack([getattr(cell, f"weight_peep_{g}", None)
                                       if g in spec.peepholes else zeros for g in "ifo"])  # (3, H)
        if spec.gate_recurrence:  # rows i, f, o of weight_gate_hh, a zero row block for g
            w = cell.weight_gate_hh  # (3H, 3H)
            params.weight_gate = torch.cat([w[:2 * H], w.new_zeros(H, 3 * H), w[2 * H:]])  # (4H, 3H)
        return KernelSpec("lstm", H, len(spec.gates), spec.gates, flags, skip), params
    return None
