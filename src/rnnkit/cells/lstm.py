"""LSTM: torch's standard cell, Greff et al.'s peephole ("vanilla") LSTM and its eight variants.

Greff, Srivastava, Koutník, Steunebrink, Schmidhuber, "LSTM: A Search Space Odyssey"
(IEEE TNNLS 2017). With σ the logistic function and x_* = W_*x x_t + b_*x,
r_* = W_*h h_{t-1} + b_*h:

    peephole:  i = σ(x_i + r_i + p_i ⊙ c_{t-1})     g = tanh(x_g + r_g)
               f = σ(x_f + r_f + p_f ⊙ c_{t-1})     c_t = f ⊙ c_{t-1} + i ⊙ g
               o = σ(x_o + r_o + p_o ⊙ c_t)         h_t = o ⊙ tanh(c_t)

Each variant changes one thing: NIG i = 1, NFG f = 1, NOG o = 1, NIAF g without tanh,
NOAF h_t = o ⊙ c_t, NP no peepholes (= standard = torch.nn.LSTM), CIFG f = 1 - i,
FGR i, f, o also receive W_gg [i_{t-1}; f_{t-1}; o_{t-1}].

Gate order in weight_ih / weight_hh / biases: i, f, g, o (torch's), absent gates left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .base import Cell
from .registry import register_cell


@dataclass(frozen=True)
class LSTMVariant:
    gates: str                 # which of "ifgo" have weights, in order
    peepholes: str = ""        # which of "ifo" have peephole vectors
    input_activation: bool = True
    output_activation: bool = True
    coupled: bool = False      # f = 1 - i (CIFG)
    gate_recurrence: bool = False  # FGR


VARIANTS: dict[str, LSTMVariant] = {
    "standard": LSTMVariant("ifgo"),
    "np": LSTMVariant("ifgo"),
    "peephole": LSTMVariant("ifgo", "ifo"),
    "nig": LSTMVariant("fgo", "fo"),
    "nfg": LSTMVariant("igo", "io"),
    "nog": LSTMVariant("ifg", "if"),
    "niaf": LSTMVariant("ifgo", "ifo", input_activation=False),
    "noaf": LSTMVariant("ifgo", "ifo", output_activation=False),
    "cifg": LSTMVariant("igo", "io", coupled=True),
    "fgr": LSTMVariant("ifgo", "ifo", gate_recurrence=True),
}


@register_cell("lstm")
class LSTMCell(Cell):
    """One LSTM step, `variant` one of VARIANTS (default "standard", exactly torch.nn.LSTM).

    Inputs of `step`: xp_t (N, G·H) projected input (both biases folded in);
    state (h, c), each (N, H); for "fgr" (h, c, i, f, o), the last three the previous
    step's gates. Returns the new state.
    Parameters: weight_ih (G·H, D), weight_hh (G·H, H), bias_ih, bias_hh (G·H,);
    weight_peep_{i,f,o} (H,) where the variant has peepholes; weight_gate_hh (3H, 3H) for FGR.
    """

    def __init__(self, input_size: int, hidden_size: int, variant: str = "standard",
                 forget_bias: float = 1.0, recurrent_init: str = "orthogonal"):
        super().__init__(input_size, hidden_size, recurrent_init)
        if variant not in VARIANTS:
            raise ValueError(
                f"unknown variant {variant!r} for cell 'lstm'; expected one of {sorted(VARIANTS)}"
            )
        self.variant = variant
        self.spec = spec = VARIANTS[variant]
        self.forget_bias = forget_bias
        self.num_gates = len(spec.gates)
        self.state_names = ("h", "c", "i", "f", "o") if spec.gate_recurrence else ("h", "c")
        self.torch_kind = "lstm" if variant in ("standard", "np") else None
        self._make_gate_parameters()
        for gate in spec.peepholes:
            setattr(self, f"weight_peep_{gate}", nn.Parameter(torch.empty(hidden_size)))
        if spec.gate_recurrence:
            self.weight_gate_hh = nn.Parameter(torch.empty(3 * hidden_size, 3 * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        H = self.hidden_size
        bound = 1.0 / math.sqrt(H)
        with torch.no_grad():
            if "f" in self.spec.gates:
                f = self.spec.gates.index("f")
                self.bias_ih[f * H:(f + 1) * H].fill_(self.forget_bias)
            for gate in self.spec.peepholes:
                nn.init.uniform_(getattr(self, f"weight_peep_{gate}"), -bound, bound)
            if self.spec.gate_recurrence:
                nn.init.uniform_(self.weight_gate_hh, -bound, bound)

    def step(self, xp_t, state):
        spec = self.spec
        h, c = state[0], state[1]
        pre = torch.addmm(xp_t, h, self.weight_hh.t())  # (N, G·H)
        blocks = dict(zip(spec.gates, pre.chunk(self.num_gates, dim=1)))
        if spec.gate_recurrence:  # add W_gg [i; f; o]_{t-1} to the three gates
            prev = torch.cat(state[2:], dim=1)  # (N, 3H)
            for gate, extra in zip("ifo", nn.functional.linear(prev, self.weight_gate_hh).chunk(3, 1)):
                blocks[gate] = blocks[gate] + extra

        def gate(name, cell):
            z = blocks[name]
            if name in spec.peepholes:
                z = z + getattr(self, f"weight_peep_{name}") * cell
            return torch.sigmoid(z)

        i = gate("i", c) if "i" in blocks else None
        if spec.coupled:
            f = 1.0 - i
        else:
            f = gate("f", c) if "f" in blocks else None
        g = torch.tanh(blocks["g"]) if spec.input_activation else blocks["g"]
        ig = g if i is None else i * g
        c_new = c + ig if f is None else torch.addcmul(ig, f, c)  # (N, H)
        o = gate("o", c_new) if "o" in blocks else None
        out = torch.tanh(c_new) if spec.output_activation else c_new
        h_new = out if o is None else o * out
        if self.gate_observer is not None:  # rnnkit.inspect.record
            self.gate_observer({k: v for k, v in zip("ifgo", (i, f, g, o)) if v is not None})
        if spec.gate_recurrence:
            return h_new, c_new, i, f, o
        return h_new, c_new

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, variant={self.variant!r}"
