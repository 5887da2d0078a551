"""Subcommands of `rnnkit` beyond the core ones (train, eval, sample, predict, plot, info).

Each module in this package is one subcommand. It defines

    NAME: str                      the word after `rnnkit`
    HELP: str                      one line for `rnnkit --help`
    EXAMPLES: str                  an "examples:" block shown under the command's --help
    add_arguments(parser) -> None  its options (argparse)
    run(args) -> int               does the work; the exit status

and is found by `discover()` without being listed anywhere. A module imports what it
needs (torch, matplotlib, ...) inside `run`, so `rnnkit --help` stays fast. Usage
problems are raised as `rnnkit.cli.CliError` (exit status 2); a missing file as
FileNotFoundError (exit status 1); both print `rnnkit: error: ...`.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def discover() -> list[ModuleType]:
    """The subcommand modules of this package, sorted by NAME."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            found.append(module)
    return sorted(found, key=lambda m: m.NAME)
