"""`rnnkit neurons`: a language model's hidden units on a text, as an HTML page, and the
units that track a property of the text (rnnkit.inspect.neurons, rnnkit.inspect.predicates)."""
from __future__ import annotations

from pathlib import Path

NAME = "neurons"
HELP = "colour a text by hidden units (HTML with top-5 guesses); find units that track a property"
EXAMPLES = """examples:
  rnnkit neurons runs/charlm-stdlib --text some.py --neuron 1:42 --neuron 1:42:c --out page.html
  rnnkit neurons runs/charlm-stdlib --text some.py --find string --find indent
  rnnkit neurons runs/charlm-stdlib --text some.py --find 're:\\bself\\b' --out self.html

Units are LAYER:INDEX[:KIND], 0-based, KIND h (default), c, or a gate (LSTM i f g o,
GRU r z n). Built-in predicates for --find: string, comment, parens, indent, column,
newline (code); quote, word (prose); re:PATTERN for any regular expression. --find
prints the units most correlated with the predicate and writes a page of them."""


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a language-model run (task charlm)")
    parser.add_argument("--text", required=True, metavar="FILE", help="the text to read (UTF-8)")
    parser.add_argument("--neuron", action="append", default=[], metavar="L:I[:KIND]",
                        help="a unit to show; repeat for several side by side")
    parser.add_argument("--find", action="append", default=[], metavar="PREDICATE",
                        help="rank units by correlation with this per-character predicate; repeatable")
    parser.add_argument("--out", metavar="PATH", default=None,
                        help="the HTML page (default neurons.html; several --find: one page each, "
                             "named PAGE-PREDICATE.html)")
    parser.add_argument("--chars", type=int, default=5000, metavar="N",
                        help="read at most the first N characters of the text (default 5000)")
    parser.add_argument("--start", type=int, default=0, metavar="N",
                        help="skip the first N characters of the text (default 0)")
    parser.add_argument("--page-size", type=int, default=400, metavar="N", help="tokens per page (default 400)")
    parser.add_argument("--top", type=int, default=10, metavar="K", help="--find: units to print (default 10)")
    parser.add_argument("--show", type=int, default=4, metavar="K",
                        help="--find: units on the page (default 4)")
    parser.add_argument("--kinds", default="h,c", help="--find: which recorded kinds to search (default h,c)")
    parser.add_argument("--screenshot", metavar="PNG", default=None,
                        help="also save a PNG of each page's top (needs playwright and /usr/bin/chromium)")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")


def run(args) -> int:
    import numpy as np

    from ..cli import CliError, load_run
    from ..inspect.neurons import find_units, neuron_page, parse_unit, read_text
    from ..inspect.predicates import get_predicate
    from ..inspect.record import GATE_KINDS

    if not args.neuron and not args.find:
        raise CliError("give --neuron L:I (units to show) or --find PREDICATE (units to look for)")
    for name, value in (("--chars", args.chars), ("--page-size", args.page_size), ("--top", args.top),
                        ("--show", args.show)):
        if value < 1:
            raise CliError(f"{name} must be >= 1, got {value}")
    if args.start < 0:
        raise CliError(f"--start must be >= 0, got {args.start}")
    try:
        units = [parse_unit(u) for u in args.neuron]
        predicates = {name: get_predicate(name) for name in args.find}
    except ValueError as err:
        raise CliError(str(err)) from None
    search = tuple(k.strip() for k in args.kinds.split(",") if k.strip())  # what --find ranks
    bad = [k for k in search if k not in ("h", "c") + GATE_KINDS]
    if bad or not search:
        raise CliError(f"--kinds {args.kinds!r}: expected a comma-separated list of h, c and gates "
                       f"({', '.join(GATE_KINDS)})")
    path = Path(args.text)
    if not path.is_file():
        raise FileNotFoundError(f"--text {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")[args.start: args.start + args.chars]
    except UnicodeDecodeError as err:
        raise CliError(f"--text {path}: not UTF-8 ({err})") from None
    if not text:
        raise CliError(f"--text {path}: no text" + (f" after --start {args.start}" if args.start else ""))

    task, model, config, ckpt = load_run(args.run_dir, args.checkpoint, args.device)
    vocab = getattr(task, "vocab", None)
    if vocab is None or not hasattr(model, "head"):
        raise CliError(f"{args.run_dir}: task {config.task!r} is not a language model; neurons needs a charlm run")
    if predicates and vocab.kind != "char":
        raise CliError("--find uses per-character predicates: it needs a character-level run")
    try:
        activity = read_text(model, vocab, text, kinds=None if units else search)
    except ValueError as err:  # e.g. --kinds c on a GRU run
        raise CliError(f"--kinds {args.kinds}: {err}") from None
    for unit in units:
        try:
            activity.values(unit)
        except (KeyError, IndexError) as err:
            raise CliError(f"--neuron {unit.label}: {err.args[0]}") from None
    source = f"{args.run_dir} ({ckpt.name}) on {path.name}, {len(activity.pieces)} {vocab.kind}s"
    unknown = vocab.unknown(text)
    if unknown:
        print(f"note: {len(unknown)} {vocab.kind}(s) of the text are not in the model's vocabulary "
              f"(read as unknown): {' '.join(map(repr, unknown[:10]))}")

    if units:
        out = Path(args.out or "neurons.html")
        write(out, neuron_page(activity, units, title=f"rnnkit neurons: {source}", page_size=args.page_size),
              args.screenshot)
    for name, predicate in predicates.items():
        values = predicate(text)
        if np.ptp(values) == 0:
            print(f"predicate {name}: constant ({values[0]:g}) on this text; nothing to correlate with")
            continue
        try:
            found = find_units(activity, values, kinds=search, top=max(args.top, args.show))
        except ValueError as err:
            raise CliError(f"--kinds {args.kinds}: {err}") from None
        print(f"predicate {name} over {len(text)} characters (mean {values.mean():.3f}): "
              f"units by |correlation|")
        for rank, (unit, r) in enumerate(found[: args.top], 1):
            print(f"  {rank:2d}  {unit.label:>10}  r = {r:+.3f}")
        stem = "".join(c if c.isalnum() else "_" for c in name)
        if args.out and len(predicates) == 1 and not units:
            out = Path(args.out)
        else:  # one page per predicate: next to --out, or in the current directory
            base = Path(args.out or "neurons.html")
            out = base.with_name(f"{base.stem}-{stem}{base.suffix or '.html'}")
        shown = [unit for unit, _ in found[: args.show]]
        note = "Units most correlated with the predicate: " + ", ".join(f"{u.label} (r = {r:+.3f})"
                                                                         for u, r in found[: args.show])
        write(out, neuron_page(activity, shown, title=f"rnnkit neurons --find {name}: {source}",
                               page_size=args.page_size, note=note, extra_tracks=[(f"predicate {name}", values)]),
              args.screenshot, stem if units or len(predicates) > 1 else "")
    return 0


def write(path: Path, text: str, screenshot: str | None = None, name: str = "") -> None:
    """Write the page; with `screenshot`, a PNG of it too (PNG name + "-NAME" for several pages)."""
    from ..cli import CliError
    from ..inspect.neurons import screenshot as take

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    if screenshot:
        png = Path(screenshot)
        if name:
            png = png.with_name(f"{png.stem}-{name}{png.suffix or '.png'}")
        png.parent.mkdir(parents=True, exist_ok=True)
        try:
            take(path, png)
        except RuntimeError as err:
            raise CliError(f"--screenshot: {err}") from None
        print(f"wrote {png}")
