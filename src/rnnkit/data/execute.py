"""Learning to Execute (Zaremba & Sutskever 2014): small Python programs and their printed output.

A program is built from an expression of `nesting` levels over numbers of `length`
digits. Each level applies one of: addition or subtraction of a number, multiplication
by a small number (1..4·length), an if/else choosing between it and a number,
a variable assignment, or a for loop adding (or subtracting) a number to a variable a
small number of times (1..4·length). The program ends with print(...) and the target is
what it prints, obtained by running it (exec with a private namespace; the programs
are ours, never user input). For example, at length 4, nesting 2:

    d=(8582+2397)
    for x in range(13):d-=4064
    print((d*11))                       target: -460768

The four curricula of the paper, for a target (length a, nesting b):

    baseline  every example at (a, b)
    naive     start at (1, 1); every `stage_epochs` epochs raise the length by one up to a,
              then the nesting up to b (the paper advances when validation accuracy
              stops improving; here the schedule is fixed so that a run is reproducible)
    mix       each example draws length uniformly in 1..a and nesting in 1..b
    combined  each example is naive's current level or mix's, half and half

Programs and outputs are character sequences; `ALPHABET` holds every character they use.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

from .pairs import PairSet

CURRICULA = ("baseline", "naive", "mix", "combined")
ALPHABET = "\n ()*+-:<=>0123456789abcdefghijklmnopqrstuvwxyz"
_NAMES = "abcdefghijklmnopqrstuvwyz"  # x is the loop variable


def _number(rng: np.random.Generator, length: int) -> int:
    low = 0 if length == 1 else 10 ** (length - 1)
    return int(rng.integers(low, 10 ** length))


def _expression(rng: np.random.Generator, length: int, nesting: int, lines: list[str], names: list[str]) -> str:
    if nesting == 0:
        return str(_number(rng, length))
    inner = _expression(rng, length, nesting - 1, lines, names)
    small = int(rng.integers(1, 4 * length + 1))
    op = ("add", "sub", "mul", "if", "assign", "for")[int(rng.integers(6))]
    if op == "add":
        return f"({inner}+{_number(rng, length)})" if rng.random() < 0.5 else f"({_number(rng, length)}+{inner})"
    if op == "sub":
        return f"({inner}-{_number(rng, length)})"
    if op == "mul":
        return f"({inner}*{small})"
    if op == "if":
        compare = "<" if rng.random() < 0.5 else ">"
        return f"({inner} if {_number(rng, length)}{compare}{_number(rng, length)} else {_number(rng, length)})"
    name = names.pop(int(rng.integers(len(names))))
    lines.append(f"{name}={inner}")
    if op == "for":
        sign = "+" if rng.random() < 0.5 else "-"
        lines.append(f"for x in range({small}):{name}{sign}={_number(rng, length)}")
    return name


def run_program(code: str) -> str:
    """What `code` prints (stripped), by running it with only `range` and `print` available."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {"__builtins__": {"range": range, "print": print}})  # noqa: S102 - our own generated programs
    return out.getvalue().strip()


def make_program(rng: np.random.Generator, length: int, nesting: int) -> tuple[str, str]:
    """A random program of numbers of `length` digits and `nesting` levels, and its printed output."""
    if length < 1 or nesting < 1:
        raise ValueError(f"length and nesting must be >= 1, got length {length}, nesting {nesting}")
    lines: list[str] = []
    expression = _expression(rng, length, nesting, lines, list(_NAMES))
    code = "\n".join(lines + [f"print({expression})"])
    return code, run_program(code)


def naive_level(stage: int, length: int, nesting: int) -> tuple[int, int]:
    """(length, nesting) of the naive curriculum at `stage` (0-based): lengths 1..a at nesting 1, then nestings."""
    levels = [(a, 1) for a in range(1, length + 1)] + [(length, b) for b in range(2, nesting + 1)]
    return levels[min(stage, len(levels) - 1)]


def curriculum_levels(curriculum: str, size: int, length: int, nesting: int, stage: int,
                      rng: np.random.Generator) -> list[tuple[int, int]]:
    """The (length, nesting) of each of `size` examples under `curriculum` at naive stage `stage`."""
    if curriculum not in CURRICULA:
        raise ValueError(f"unknown curriculum {curriculum!r}: expected one of {', '.join(CURRICULA)}")
    if curriculum == "baseline":
        return [(length, nesting)] * size
    naive = naive_level(stage, length, nesting)
    if curriculum == "naive":
        return [naive] * size
    mixed = [(int(rng.integers(1, length + 1)), int(rng.integers(1, nesting + 1))) for _ in range(size)]
    if curriculum == "mix":
        return mixed
    return [naive if rng.random() < 0.5 else m for m in mixed]


def make_execute_pairs(size: int, length: int, nesting: int, seed: int, curriculum: str = "baseline",
                       stage: int = 0) -> PairSet:
    """`size` (program, output) character pairs; evaluation sets use curriculum "baseline"."""
    rng = np.random.default_rng(seed)
    programs, outputs = [], []
    for a, b in curriculum_levels(curriculum, size, length, nesting, stage, rng):
        code, output = make_program(rng, a, b)
        programs.append(code)
        outputs.append(output)
    return PairSet.from_texts(programs, outputs, "char", "char")
