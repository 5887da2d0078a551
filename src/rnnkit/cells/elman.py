"""Elman RNN (tanh or ReLU; IRNN) and the lectures' parameter-free additive toy."""
from __future__ import annotations

import torch

from .base import Cell
from .registry import register_cell

_NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


@register_cell("rnn")
class ElmanCell(Cell):
    """h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act = tanh or relu (torch.nn.RNN's cell).

    Inputs of `step`: xp_t (N, H) projected input with both biases; state (h,) with h (N, H).
    """

    num_gates = 1
    state_names = ("h",)

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh",
                 recurrent_init: str = "orthogonal"):
        super().__init__(input_size, hidden_size, recurrent_init)
        if nonlinearity not in _NONLINEARITIES:
            raise ValueError(
                f"unknown nonlinearity {nonlinearity!r} for cell 'rnn'; expected 'tanh' or 'relu'"
            )
        self.nonlinearity = nonlinearity
        self.torch_kind = f"rnn_{nonlinearity}"
        self._act = _NONLINEARITIES[nonlinearity]
        self._make_gate_parameters()
        self.reset_parameters()

    def step(self, xp_t, state):
        (h,) = state
        return (self._act(torch.addmm(xp_t, h, self.weight_hh.t())),)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}"


@register_cell("irnn")
def irnn(input_size: int, hidden_size: int, recurrent_init: str = "identity") -> ElmanCell:
    """IRNN (Le et al. 2015): ReLU Elman cell, identity recurrent matrix, zero biases."""
    return ElmanCell(input_size, hidden_size, nonlinearity="relu", recurrent_init=recurrent_init)


@register_cell("additive")
class AdditiveCell(Cell):
    """The lectures' additive toy: h_t = h_{t-1} + x_t. No parameters; D must equal H."""

    num_gates = 1
    state_names = ("h",)

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        if input_size != hidden_size:
            raise ValueError(
                f"the additive cell has no parameters, so its input size must equal its hidden "
                f"size; got input_size={input_size}, hidden_size={hidden_size}"
            )

    def project_input(self, x):
        return x

    def reset_parameters(self) -> None:
        pass

    def step(self, xp_t, state):
        (h,) = state
        return (h + xp_t,)
