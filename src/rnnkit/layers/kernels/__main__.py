"""python -m rnnkit.layers.kernels: build the C++ recurrence extension now (it is otherwise
built on first use) and say how long it took."""
from .extension import main

main()
