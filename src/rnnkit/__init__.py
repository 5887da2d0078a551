"""rnnkit: recurrent neural networks for PyTorch."""
from .cells import Cell, cell_names, make_cell, register_cell
from .layers import Recurrent
from .layers.kernels.denormals import flush_denormals

__version__ = "0.1.0"

__all__ = ["Recurrent", "Cell", "make_cell", "register_cell", "cell_names", "flush_denormals", "__version__"]
