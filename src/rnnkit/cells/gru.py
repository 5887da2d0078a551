"""GRU: torch.nn.GRU's form and Cho et al.'s original form.

    r = σ(x_r + r_r),  z = σ(x_z + r_z),  h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
    standard (torch): n = tanh(x_n + r ⊙ (W_nh h_{t-1} + b_nh))
    original (Cho et al. 2014): n = tanh(x_n + W_nh (r ⊙ h_{t-1}) + b_nh)

Gate order in the weights: r, z, n (torch's).
"""
from __future__ import annotations

import torch

from .base import Cell
from .registry import register_cell

GRU_VARIANTS = ("standard", "original")


@register_cell("gru")
class GRUCell(Cell):
    """One GRU step. Inputs of `step`: xp_t (N, 3H) from `project_input`; state (h,), h (N, H)."""

    num_gates = 3
    state_names = ("h",)

    def __init__(self, input_size: int, hidden_size: int, variant: str = "standard",
                 recurrent_init: str = "orthogonal"):
        super().__init__(input_size, hidden_size, recurrent_init)
        if variant not in GRU_VARIANTS:
            raise ValueError(
                f"unknown variant {variant!r} for cell 'gru'; expected one of {list(GRU_VARIANTS)}"
            )
        self.variant = variant
        self.torch_kind = "gru" if variant == "standard" else None
        self._make_gate_parameters()
        self.reset_parameters()

    def folded_bias(self):
        H = self.hidden_size
        if self.variant == "original":  # b_nh sits outside the reset gate: fold it all
            return self.bias_ih + self.bias_hh
        # standard: b_nh is multiplied by r, so it stays in the step
        return torch.cat([self.bias_ih[: 2 * H] + self.bias_hh[: 2 * H], self.bias_ih[2 * H:]])

    def step(self, xp_t, state):
        (h,) = state
        H = self.hidden_size
        x_r, x_z, x_n = xp_t.chunk(3, dim=1)
        if self.variant == "standard":
            rec = torch.mm(h, self.weight_hh.t())  # (N, 3H)
            h_r, h_z, h_n = rec.chunk(3, dim=1)
            r = torch.sigmoid(x_r + h_r)
            z = torch.sigmoid(x_z + h_z)
            n = torch.tanh(torch.addcmul(x_n, r, h_n + self.bias_hh[2 * H:]))
        else:
            rec = torch.mm(h, self.weight_hh[: 2 * H].t())  # (N, 2H)
            h_r, h_z = rec.chunk(2, dim=1)
            r = torch.sigmoid(x_r + h_r)
            z = torch.sigmoid(x_z + h_z)
            n = torch.tanh(torch.addmm(x_n, r * h, self.weight_hh[2 * H:].t()))
        if self.gate_observer is not None:  # rnnkit.inspect.record
            self.gate_observer({"r": r, "z": z, "n": n})
        return (torch.lerp(n, h, z),)  # (1 - z) n + z h

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, variant={self.variant!r}"
