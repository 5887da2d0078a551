"""Recurrence over time: `Recurrent` runs any cell, stacked, bidirectional, residual, skip."""
from .recurrent import Recurrent

__all__ = ["Recurrent"]
