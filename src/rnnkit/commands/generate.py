"""`rnnkit generate RUN_DIR`: continue a piece with a trained music run and write MIDI / MusicXML.

The run's task must generate music (task `music`, rnnkit.tasks.music): a polyphonic run
continues the first --prime-frames frames of a real chorale (or of --prime-file) by --length
sampled frames; a melody run does the same with events. Files are written with music21
(MIDI by a .mid suffix, MusicXML by .musicxml), and --plot draws the piano roll.
"""
from __future__ import annotations

NAME = "generate"
HELP = "continue a piece with a trained music run; write MIDI, MusicXML and a piano-roll plot"
EXAMPLES = """examples:
  rnnkit generate runs/chorales-lstm --prime-frames 8 --length 64 --out chorale.mid
  rnnkit generate runs/chorales-lstm --out chorale.mid --out chorale.musicxml --plot roll.png --seed 1
  rnnkit generate runs/chorales-lstm --piece bach/bwv269 --split train --temperature 0.8 --out x.mid
  rnnkit generate runs/chorales-lstm --prime-file my-start.mid --prime-frames 16 --out mine.mid
  rnnkit generate runs/chorales-melody --prime-frames 6 --length 40 --out melody.mid

--length counts the new frames (melody: events) after the prime; the written piece is the
prime followed by them."""


def add_generate_arguments(parser) -> None:
    """The options of `rnnkit generate` (and `rnnkit sample` for a music run)."""
    parser.add_argument("--prime-frames", type=int, default=8,
                        help="frames (melody: events) of the real piece to start from (default 8; 0: from silence)")
    parser.add_argument("--length", type=int, default=64, help="frames (melody: events) to generate after the prime")
    parser.add_argument("--split", choices=("train", "valid", "test"), default="test",
                        help="the split the primed piece comes from (default test)")
    parser.add_argument("--piece", default="", help="the piece to continue, by name (e.g. bach/bwv269); "
                                                    "default: --index of the split")
    parser.add_argument("--index", type=int, default=0, help="the piece to continue, by position in the split")
    parser.add_argument("--prime-file", metavar="FILE", default=None,
                        help="start from a MIDI/MusicXML file of your own instead")
    parser.add_argument("--out", action="append", metavar="FILE",
                        help="write .mid/.midi or .musicxml/.xml/.mxl (repeatable)")
    parser.add_argument("--plot", metavar="PNG", default=None, help="draw the piano roll (prime shaded)")
    parser.add_argument("--temperature", type=float, default=1.0, help="> 0; below 1 fewer surprises")
    parser.add_argument("--greedy", action="store_true", help="roll: keys with p > 0.5; melody: argmax")
    parser.add_argument("--seed", type=int, default=None, help="seed for a reproducible sample")
    parser.add_argument("--tempo", type=int, default=80, help="quarter notes per minute in the written file")
    parser.add_argument("--quiet", action="store_true", help="print only the written paths")


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a music run directory (or one checkpoint in it)")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best",
                        help="which checkpoint of the run (default: best, else last)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    add_generate_arguments(parser)


def run(args) -> int:
    from ..cli import CliError, load_run
    from ..data.music import MusicError

    if not args.out and not args.plot:
        raise CliError("generate writes files: give --out FILE.mid (or .musicxml) and/or --plot FILE.png")
    task, model, config, _ = load_run(args.run_dir, args.checkpoint, args.device)
    if config.task != "music" or not hasattr(task, "generate"):
        raise CliError(f"{args.run_dir} is a {config.task!r} run; generate needs a music run "
                       "(rnnkit sample is the command for text)")
    try:
        task.generate(model, args)
    except MusicError as err:
        raise CliError(str(err)) from None
    return 0
