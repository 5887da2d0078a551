"""Neuron pages: a text coloured by one unit's activation, with the model's top-5 guesses
for the next token under every token (Karpathy, Johnson & Fei-Fei 2015, "Visualizing
and understanding recurrent networks"; the lectures' "realistic hidden units" slide).

    activity = read_text(model, vocab, text)                # recorded h, c, gates + next-token probabilities
    units = [parse_unit("1:42"), parse_unit("1:42:c")]
    html = neuron_page(activity, units, title="...")        # a self-contained HTML page
    found = find_units(activity, get_predicate("string"))   # units ranked by |correlation|

The page has no network access and no scripts: inline CSS only, pages of
`page_size` tokens switched by anchors (CSS `:target`). Each token is a column: one
coloured cell per unit (blue −1 … white 0 … red +1 of the unit's range), then the
five most probable next tokens, each with its probability. Every coloured cell
carries its value in `data-value`, every guess its probability in `data-p`, so the
page can be checked against the recording (tests/test_inspect_browser.py does so in
Chromium).
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import torch

from ..data.vocab import EOL, Vocab, tokenize_words
from .record import GATE_KINDS, Trace, record

SIGMOID_KINDS = ("i", "f", "o", "r", "z")  # gates in (0, 1)
BLUE, WHITE, RED = (49, 104, 224), (255, 255, 255), (222, 45, 38)


@dataclass(frozen=True)
class Unit:
    """One recorded quantity of one unit: layer (0-based), index, kind (h, c or a gate)."""

    layer: int
    index: int
    kind: str = "h"

    @property
    def label(self) -> str:
        return f"{self.layer}:{self.index}:{self.kind}"


def parse_unit(text: str) -> Unit:
    """`L:I` or `L:I:KIND` (layer and unit 0-based; KIND h (default), c, or a gate) -> Unit."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.strip().isdigit() for p in parts[:2]):
        raise ValueError(f"unit {text!r}: expected LAYER:INDEX or LAYER:INDEX:KIND, e.g. 1:42 or 0:7:c")
    kind = parts[2] if len(parts) == 3 else "h"
    if kind not in ("h", "c") + GATE_KINDS:
        raise ValueError(f"unit {text!r}: unknown kind {kind!r}; expected h, c or a gate ({', '.join(GATE_KINDS)})")
    return Unit(int(parts[0]), int(parts[1]), kind)


@dataclass
class TextActivity:
    """A model's reading of a text: `pieces[t]` the text of token t, `trace` its recording
    (N = 1), `probs` (T, V) the next-token distribution after each token, `vocab`."""

    pieces: list[str]
    trace: Trace
    probs: np.ndarray
    vocab: Vocab

    def values(self, unit: Unit) -> np.ndarray:
        """(T,) the unit's recorded activation after each token."""
        seq = self.trace.get(unit.kind, unit.layer)  # (1, T, H)
        if not 0 <= unit.index < seq.shape[-1]:
            raise IndexError(f"unit {unit.label}: index out of range 0..{seq.shape[-1] - 1}")
        return seq[0, :, unit.index].numpy()

    def top(self, t: int, k: int = 5) -> list[tuple[str, float]]:
        """The k most probable next tokens after token t, with their probabilities."""
        order = np.argsort(-self.probs[t], kind="stable")[:k]
        return [(self.vocab.token(int(i)), float(self.probs[t, i])) for i in order]

    def matrix(self, kind: str) -> np.ndarray:
        """(T, layers·H) every unit of `kind`, column layer·H + index."""
        values = self.trace[kind][:, 0, 0]  # (layers, T, H)
        return values.permute(1, 0, 2).flatten(1).numpy()


@torch.no_grad()
def read_text(model, vocab: Vocab, text: str, kinds=None, chunk: int = 512) -> TextActivity:
    """Run a language model (`model(tokens (1, L), state) -> (logits (1, L, V), state)`, e.g.
    rnnkit.models.LanguageModel) over `text` in chunks of `chunk` tokens with the state
    carried, recording `kinds` (None: everything the cells have) of every layer."""
    if not text:
        raise ValueError("the text is empty")
    if vocab.kind == "char":
        pieces = list(text)
    else:
        pieces = ["\n" if w == EOL else w for w in tokenize_words(text)]  # a line end shows as one
    ids = torch.as_tensor(vocab.encode(text), dtype=torch.long)
    if len(ids) != len(pieces):
        raise ValueError(f"the vocabulary encoded {len(ids)} tokens for {len(pieces)} pieces of text")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    probs, state = [], None
    try:
        with record(model, kinds=kinds) as rec:
            for start in range(0, len(ids), chunk):
                logits, state = model(ids[None, start:start + chunk].to(device), state)  # (1, l, V)
                probs.append(logits[0].float().softmax(-1).cpu())
    finally:
        model.train(was_training)
    trace = rec.trace()
    trace.values = {k: v.float().cpu() for k, v in trace.values.items()}
    return TextActivity(pieces, trace, torch.cat(probs).numpy(), vocab)


# -- colours ------------------------------------------------------------------------------
def value_range(kind: str, values: np.ndarray) -> tuple[float, float]:
    """The colour scale of a unit: (0, 1) for sigmoid gates, (−1, 1) for tanh-bounded values,
    else symmetric around 0 up to the 99th percentile of the magnitude (cell states, ReLU
    units; the rare larger values are drawn at full colour)."""
    if kind in SIGMOID_KINDS:
        return 0.0, 1.0
    magnitude = np.abs(values)
    if not magnitude.size or magnitude.max() <= 1.0:
        return -1.0, 1.0
    m = max(float(np.percentile(magnitude, 99)), 1.0)
    return -m, m


def colour(value: float, low: float, high: float) -> tuple[int, int, int]:
    """RGB of `value` on a blue (low) – white (middle) – red (high) scale; clamped at the ends."""
    s = 2.0 * (float(value) - low) / (high - low) - 1.0 if high > low else 0.0
    s = min(max(s, -1.0), 1.0)
    end = RED if s >= 0 else BLUE
    a = abs(s)
    return tuple(int(round(w + (e - w) * a)) for w, e in zip(WHITE, end))


def _rgb(c: tuple[int, int, int]) -> str:
    return f"rgb({c[0]}, {c[1]}, {c[2]})"


def _shown(piece: str) -> str:
    """How a token is drawn: whitespace made visible."""
    return {"\n": "↵", " ": "␣", "\t": "⇥", "": "∅"}.get(piece, piece)


# -- the page -----------------------------------------------------------------------------
_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.2em; } .note { color: #555; font-size: 0.9em; max-width: 60em; }
.legend { margin: 0.8em 0; } .legend div { margin: 0.2em 0; font-size: 0.9em; }
.bar { display: inline-block; width: 12em; height: 0.9em; vertical-align: middle; border: 1px solid #aaa;
       margin: 0 0.4em; }
nav a { margin-right: 0.4em; }
.page { display: none; } .page:target { display: block; }
.pages:not(:has(.page:target)) .page:first-child { display: block; }
.text { display: flex; flex-wrap: wrap; align-items: flex-start; font-family: monospace; }
.tok { display: flex; flex-direction: column; margin: 0 1px 8px 0; min-width: 2.8em; }
.v { text-align: center; font-size: 15px; padding: 1px 0; white-space: pre; }
.ws { color: #999; }
.top { font-size: 9px; color: #333; margin-top: 1px; }
.g { display: flex; justify-content: space-between; padding: 0 2px; white-space: pre; }
.br { flex-basis: 100%; height: 0; }
"""


def neuron_page(activity: TextActivity, units: list[Unit], title: str = "rnnkit neurons", page_size: int = 400,
                note: str = "", extra_tracks: list[tuple[str, np.ndarray]] = ()) -> str:
    """A self-contained HTML page of `activity`'s text coloured by each of `units`, top-5
    guesses under every token, `page_size` tokens per page.

    extra_tracks: (label, values (T,)) drawn like units (e.g. the predicate searched for).
    Returns the HTML text."""
    if page_size < 1:
        raise ValueError(f"page_size must be >= 1, got {page_size}")
    if not units and not extra_tracks:
        raise ValueError("give at least one unit to show")
    tracks = []
    for label, values in extra_tracks:
        values = np.asarray(values, dtype=np.float32)
        low, high = float(values.min()), float(values.max())
        tracks.append((label, values, low, high if high > low else low + 1))
    for unit in units:
        values = activity.values(unit)
        tracks.append((f"layer {unit.layer} unit {unit.index} ({unit.kind})", values, *value_range(unit.kind, values)))
    T = len(activity.pieces)
    pages = [range(s, min(s + page_size, T)) for s in range(0, T, page_size)]
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>"]
    if note:
        out.append(f'<p class="note">{html.escape(note)}</p>')
    out.append('<p class="note">Each column is one token. The coloured rows are the units below '
               '(the value after reading that token); under them, the model\'s five most probable '
               'next tokens with their probabilities.</p>')
    out.append('<div class="legend">')
    for j, (label, _, low, high) in enumerate(tracks):
        bar = f"linear-gradient(to right, {_rgb(BLUE)}, {_rgb(WHITE)}, {_rgb(RED)})"
        out.append(f'<div data-track="{j}">row {j + 1}: <b>{html.escape(label)}</b>'
                   f'<span class="bar" style="background: {bar}"></span>{low:.3g} … {high:.3g}</div>')
    out.append("</div>")
    if len(pages) > 1:
        links = " ".join(f'<a href="#page-{p + 1}">{p + 1}</a>' for p in range(len(pages)))
        out.append(f"<nav>pages ({page_size} tokens each): {links}</nav>")
    out.append('<div class="pages">')
    for p, steps in enumerate(pages):
        out.append(f'<section class="page" id="page-{p + 1}"><div class="text">')
        for t in steps:
            out.append(_token_html(activity, tracks, t))
        out.append("</div></section>")
    out.append("</div></body></html>")
    return "\n".join(out)


def _token_html(activity: TextActivity, tracks, t: int) -> str:
    piece = activity.pieces[t]
    shown = html.escape(_shown(piece))
    ws = " ws" if piece.isspace() or not piece else ""
    cells = []
    for j, (label, values, low, high) in enumerate(tracks):
        v = float(values[t])
        cells.append(f'<span class="v{ws}" data-track="{j}" data-value="{v:.6g}" '
                     f'title="{html.escape(label)}: {v:.4f}" style="background: {_rgb(colour(v, low, high))}">'
                     f"{shown}</span>")
    guesses = []
    for token, p in activity.top(t):
        shade = 255 - int(round(120 * p))
        guesses.append(f'<span class="g" data-p="{p:.6g}" style="background: rgb({shade}, {shade}, 255)">'
                       f"<span>{html.escape(_shown(token))}</span><span>{p:.2f}</span></span>")
    column = (f'<span class="tok" data-t="{t}">{"".join(cells)}<span class="top">{"".join(guesses)}</span></span>')
    return column + ('<span class="br"></span>' if piece == "\n" else "")


# -- finding units ------------------------------------------------------------------------
def find_units(activity: TextActivity, values: np.ndarray, kinds=("h", "c"), top: int = 10):
    """Units ranked by |Pearson correlation| of their activation with `values` (T,).

    Returns a list of (Unit, r), strongest first, over every layer and the given kinds."""
    from .predicates import correlations

    values = np.asarray(values, dtype=np.float64)
    found = []
    for kind in kinds:
        if kind not in activity.trace.kinds:
            continue
        r = correlations(activity.matrix(kind).astype(np.float64), values)
        H = activity.trace[kind].shape[-1]
        found += [(Unit(int(c) // H, int(c) % H, kind), float(r[c])) for c in range(len(r))]
    if not found:
        raise ValueError(f"none of the kinds {', '.join(kinds)} was recorded "
                         f"(recorded: {', '.join(activity.trace.kinds)})")
    found.sort(key=lambda item: -abs(item[1]))
    return found[:top]


# -- a picture of the page ----------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def screenshot(page_path, png_path, width: int = 1100, height: int = 800, browser: str = CHROMIUM) -> None:
    """A PNG of the top `width`×`height` pixels of an HTML page, rendered by a headless
    Chromium (`browser`) through Playwright (pip install playwright; apt-get install chromium)."""
    from pathlib import Path

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise RuntimeError("a screenshot needs the playwright Python package (pip install playwright)") from None
    if not Path(browser).exists():
        raise RuntimeError(f"a screenshot needs Chromium at {browser} (apt-get install chromium)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=browser, args=CHROMIUM_ARGS)
        try:
            tab = chromium.new_page(viewport={"width": width, "height": height})
            tab.goto(Path(page_path).resolve().as_uri())
            png = tab.screenshot()
        finally:
            chromium.close()
    _save_small_png(png, png_path)


def _save_small_png(png: bytes, path) -> None:
    """Save PNG bytes with a 256-colour palette (a page of flat colours loses nothing visible;
    the file is ~3× smaller), or as they are without Pillow."""
    import io
    from pathlib import Path

    try:
        from PIL import Image
    except ImportError:
        Path(path).write_bytes(png)
        return
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
