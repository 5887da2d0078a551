"""Recurrence over time: `Recurrent` runs any cell, stacked, bidirectional, residual, skip."""
from .dropout import Dropout, dropout
from .recurrent import Recurrent

__all__ = ["Dropout", "Recurrent", "dropout"]
