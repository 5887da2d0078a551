"""rnnkit: recurrent neural networks for PyTorch."""
from .cells import Cell, cell_names, make_cell, register_cell
from .layers import Recurrent

__version__ = "0.1.0"

__all__ = ["Recurrent", "Cell", "make_cell", "register_cell", "cell_names", "__version__"]
