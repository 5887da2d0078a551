"""The cell contract: one step of a recurrence, with its parameters and its defaults.

A cell never loops over time. The layer above it (`rnnkit.layers.Recurrent`) calls
`project_input` once for all steps, then `step` once per step, so the loop holds
only the recurrent product and the elementwise gate math.
"""
from __future__ import annotations

import math

import torch
from torch import nn

_RECURRENT_INITS = ("orthogonal", "identity", "uniform")


class Cell(nn.Module):
    """Base class of every rnnkit cell.

    Subclasses set `num_gates` (G, the number of H-sized blocks in `weight_ih`),
    `state_names` (the tensors of the state, `h` first), `torch_kind` (the name of
    the torch fused kernel that computes exactly this cell, or None) and implement
    `step`.

    Parameters, when the cell has any: `weight_ih` (G·H, D), `weight_hh` (G·H, H),
    `bias_ih` (G·H,), `bias_hh` (G·H,), as in torch.nn.
    """

    num_gates: int = 1
    state_names: tuple[str, ...] = ("h",)
    torch_kind: str | None = None
    # set only while rnnkit.inspect.record runs: step() hands it its gate activations
    gate_observer = None

    def __init__(self, input_size: int, hidden_size: int, recurrent_init: str = "orthogonal"):
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(
                f"input_size and hidden_size must be positive, got input_size={input_size}, "
                f"hidden_size={hidden_size}"
            )
        if recurrent_init not in _RECURRENT_INITS:
            raise ValueError(
                f"unknown recurrent_init {recurrent_init!r}; expected one of {_RECURRENT_INITS}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.recurrent_init = recurrent_init

    # -- parameters -----------------------------------------------------------------
    def _make_gate_parameters(self) -> None:
        G, H, D = self.num_gates, self.hidden_size, self.input_size
        self.weight_ih = nn.Parameter(torch.empty(G * H, D))
        self.weight_hh = nn.Parameter(torch.empty(G * H, H))
        self.bias_ih = nn.Parameter(torch.empty(G * H))
        self.bias_hh = nn.Parameter(torch.empty(G * H))

    def reset_parameters(self) -> None:
        """Small uniform input weights, orthogonal (or identity) recurrent blocks, zero biases."""
        H = self.hidden_size
        bound = 1.0 / math.sqrt(H)
        with torch.no_grad():
            nn.init.uniform_(self.weight_ih, -bound, bound)
            for block in self.weight_hh.split(H, dim=0):  # one H×H block per gate
                init_recurrent_block(block, self.recurrent_init)
            self.bias_ih.zero_()
            self.bias_hh.zero_()

    # -- the step -------------------------------------------------------------------
    def project_input(self, x: torch.Tensor) -> torch.Tensor:
        """Input product for any number of steps: (..., D) -> (..., G·H).

        Adds `bias_ih` (and `bias_hh`, where the cell lets it be folded in).
        """
        return nn.functional.linear(x, self.weight_ih, self.folded_bias())

    def folded_bias(self) -> torch.Tensor:
        """The bias added once to the projected input: bias_ih + bias_hh by default."""
        return self.bias_ih + self.bias_hh

    def recurrent_bias(self) -> torch.Tensor | None:
        """The bias that stays inside the step (None when all of it is folded)."""
        return None

    def step(self, xp_t: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """One step. xp_t: (N, G·H) projected input; state: tuple of (N, H). Returns the new state."""
        raise NotImplementedError

    def initial_state(self, batch_size: int, dtype=None, device=None) -> tuple[torch.Tensor, ...]:
        """Zeros for every state tensor: tuple of (N, H)."""
        zeros = torch.zeros(batch_size, self.hidden_size, dtype=dtype, device=device)
        return tuple(zeros if i == 0 else zeros.clone() for i in range(len(self.state_names)))

    @property
    def projected_size(self) -> int:
        """Width of `project_input`'s output (G·H)."""
        return self.num_gates * self.hidden_size

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


def init_recurrent_block(block: torch.Tensor, how: str) -> None:
    """Initialise one square H×H recurrent block in place: orthogonal, identity or uniform."""
    if how == "orthogonal":
        nn.init.orthogonal_(block)
    elif how == "identity":
        with torch.no_grad():
            block.copy_(torch.eye(block.shape[0], block.shape[1], dtype=block.dtype))
    else:
        bound = 1.0 / math.sqrt(block.shape[1])
        nn.init.uniform_(block, -bound, bound)
