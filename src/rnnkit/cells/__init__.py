"""Cells: one step of each recurrence (`step(xp_t, state) -> state`), no loop over time."""
from .base import Cell
from .elman import AdditiveCell, ElmanCell
from .gru import GRU_VARIANTS, GRUCell
from .lstm import VARIANTS as LSTM_VARIANTS, LSTMCell
from .registry import cell_names, make_cell, register_cell

__all__ = [
    "Cell", "ElmanCell", "AdditiveCell", "LSTMCell", "GRUCell", "LSTM_VARIANTS", "GRU_VARIANTS",
    "make_cell", "register_cell", "cell_names",
]
