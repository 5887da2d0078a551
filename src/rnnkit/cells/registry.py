"""Cell names -> cell classes. `make_cell("lstm", 64, 128, variant="cifg")`."""
from __future__ import annotations

import difflib
from typing import Callable

_CELLS: dict[str, Callable] = {}


def register_cell(name: str):
    """Decorator: register a cell class (or factory) under `name`; a duplicate name is an error."""

    def add(factory):
        if name in _CELLS:
            raise ValueError(f"a cell named {name!r} is already registered ({_CELLS[name]!r})")
        _CELLS[name] = factory
        return factory

    return add


def cell_names() -> list[str]:
    return sorted(_CELLS)


def make_cell(name: str, input_size: int, hidden_size: int, **options):
    """Build the cell registered as `name` with the given sizes and cell options."""
    if name not in _CELLS:
        close = difflib.get_close_matches(str(name), _CELLS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown cell {name!r}{hint}; expected one of {cell_names()}")
    return _CELLS[name](input_size, hidden_size, **options)
