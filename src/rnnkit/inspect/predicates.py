"""Per-character predicates over a text, for finding neurons that track them.

Each predicate maps a text of T characters to a float array (T,): its value at
character t describes the state *after reading* character t, which is what a
language model's hidden state h_t can know. Built in:

| name | value at character t | for |
| --- | --- | --- |
| `string` | 1 inside a Python string literal (from its opening quote up to, not including, the closing quote) | code |
| `comment` | 1 inside a `#` comment (up to the end of the line) | code |
| `parens` | 1 while at least one `(` is open (brackets in strings and comments do not count) | code |
| `indent` | the leading spaces of the current line, in levels of 4 | code |
| `column` | the position of t in its line (0 at the first character) | code, prose |
| `newline` | 1 at a newline character (the state just after a newline) | code, prose |
| `quote` | 1 between a double quote and the next one (prose quotations) | prose |
| `word` | 1 at letters and digits | prose |
| `re:PATTERN` | 1 at characters inside a match of the regular expression | anything |

The Python scanner is a small state machine (not `tokenize`), so it works on any
slice of text, complete code or not; the tests check it against `tokenize` on real
standard-library files.
"""
from __future__ import annotations

import re
from typing import Callable

import numpy as np

def python_regions(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(string, comment, paren_depth), each (T,): string and comment 0/1, paren_depth the
    number of `(` open after reading each character (outside strings and comments)."""
    T = len(text)
    string = np.zeros(T, dtype=np.float32)
    comment = np.zeros(T, dtype=np.float32)
    depth = np.zeros(T, dtype=np.float32)
    i, level = 0, 0
    while i < T:
        ch = text[i]
        if ch == "#":
            end = text.find("\n", i)
            end = T if end < 0 else end
            comment[i:end] = 1
            depth[i:end] = level
            i = end
            continue
        if ch in "'\"":
            quote = text[i] * 3 if text.startswith(ch * 3, i) else ch
            j = i + len(quote)
            while j < T:
                if text[j] == "\\":  # escapes the next character, in raw strings too
                    j += 2
                    continue
                if text.startswith(quote, j):
                    break
                if text[j] == "\n" and len(quote) == 1:  # unterminated: the line ends it
                    break
                j += 1
            j = min(j, T)
            string[i:j] = 1
            depth[i:j] = level
            close = len(quote) if text.startswith(quote, j) else 0
            depth[j:j + close] = level
            i = j + close
            continue
        if ch == "(":
            level += 1
        elif ch == ")":
            level = max(level - 1, 0)
        depth[i] = level
        i += 1
    return string, comment, depth


def _line_positions(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(column, indent) of every character: position in its line, leading spaces of its line."""
    column = np.zeros(len(text), dtype=np.float32)
    indent = np.zeros(len(text), dtype=np.float32)
    start = 0
    for line in text.split("\n"):
        n = len(line) + 1  # with its newline
        end = min(start + n, len(text))
        column[start:end] = np.arange(end - start)
        indent[start:end] = len(line) - len(line.lstrip(" "))
        start += n
    return column, indent


def _quote(text: str) -> np.ndarray:
    inside, out = False, np.zeros(len(text), dtype=np.float32)
    for t, ch in enumerate(text):
        if ch == '"':
            inside = not inside
        out[t] = inside
    return out


def _regex(pattern: str) -> Callable[[str], np.ndarray]:
    try:
        compiled = re.compile(pattern, re.MULTILINE)
    except re.error as err:
        raise ValueError(f"predicate re:{pattern}: not a regular expression ({err})") from None

    def predicate(text: str) -> np.ndarray:
        out = np.zeros(len(text), dtype=np.float32)
        for match in compiled.finditer(text):
            out[match.start():match.end()] = 1
        return out

    return predicate


PREDICATES: dict[str, Callable[[str], np.ndarray]] = {
    "string": lambda text: python_regions(text)[0],
    "comment": lambda text: python_regions(text)[1],
    "parens": lambda text: (python_regions(text)[2] > 0).astype(np.float32),
    "indent": lambda text: _line_positions(text)[1] / 4,
    "column": lambda text: _line_positions(text)[0],
    "newline": lambda text: np.array([ch == "\n" for ch in text], dtype=np.float32),
    "quote": _quote,
    "word": lambda text: np.array([ch.isalnum() for ch in text], dtype=np.float32),
}


def get_predicate(name: str) -> Callable[[str], np.ndarray]:
    """A built-in predicate by name, or `re:PATTERN` for a regular expression."""
    if name.startswith("re:"):
        return _regex(name[3:])
    if name not in PREDICATES:
        raise ValueError(f"unknown predicate {name!r}: built in are {', '.join(PREDICATES)}; "
                         "or re:PATTERN for a regular expression")
    return PREDICATES[name]


def correlations(activations: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Pearson correlation of every column of activations (T, U) with values (T,) -> (U,).

    Columns (or a predicate) that never change get correlation 0."""
    if activations.shape[0] != values.shape[0]:
        raise ValueError(f"activations have {activations.shape[0]} steps, the predicate {values.shape[0]}")
    a = activations - activations.mean(0)
    v = values - values.mean()
    norm = np.sqrt((a * a).sum(0)) * np.sqrt((v * v).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * v[:, None]).sum(0) / norm
    return np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0)
