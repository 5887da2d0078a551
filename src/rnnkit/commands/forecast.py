"""`rnnkit forecast RUN_DIR --horizon 20 --plot out.png`: forecast a trained series beyond
its end (or from an earlier origin with --at) and draw history, forecast and shaded
prediction intervals. The same as `rnnkit sample` on a forecast run, under the name a
forecaster looks for.
"""
from __future__ import annotations

NAME = "forecast"
HELP = "forecast beyond the end of a trained series, with intervals and a fan chart"
EXAMPLES = """examples:
  rnnkit forecast runs/forecast-sunspots --horizon 20 --plot sunspots.png
  rnnkit forecast runs/forecast-co2 --horizon 36 --at -36 --plot co2.png   # hold out 3 years, draw what happened
  rnnkit forecast runs/forecast-co2 --horizon 12 --csv next-year.csv"""


def add_arguments(parser) -> None:
    from ..tasks.forecast import Forecast

    parser.add_argument("run_dir", metavar="RUN_DIR", help="a forecast run directory (or one checkpoint in it)")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best",
                        help="which checkpoint of the run (default: best, else last)")
    parser.add_argument("--device", default="auto", help="auto (cuda if present, else cpu), cpu, cuda, cuda:N")
    Forecast.add_arguments("sample", parser)


def run(args) -> int:
    from ..cli import CliError, _run_task, load_run
    from ..tasks.forecast import Forecast

    task_cls, _, _ = _run_task(args.run_dir, args.checkpoint)
    if not issubclass(task_cls, Forecast):
        raise CliError(f"{args.run_dir} is a {task_cls.name!r} run; rnnkit forecast needs a forecast run "
                       f"(for other tasks: rnnkit sample {args.run_dir})")
    task, model, _, _ = load_run(args.run_dir, args.checkpoint, args.device)
    task.sample(model, args)
    return 0
