"""Forecast quality: the RNN recipes next to naive, seasonal naive, MLP, ARIMA and ETS on the same test targets.

    python benchmarks/forecast_quality.py                           # sunspots and co2 recipes, seed 0
    python benchmarks/forecast_quality.py --seeds 0,1,2             # the RNN over three seeds (mean ± sd)
    python benchmarks/forecast_quality.py --recipe configs/forecast-co2.yaml model.hidden_size=64
    python benchmarks/forecast_quality.py --run runs/forecast-sunspots  # score a run already trained
    python benchmarks/forecast_quality.py --plots benchmarks/out    # and a fan chart of each test part

For each recipe: train it (run dir under benchmarks/out/runs/), then score the best
checkpoint and every baseline with `rnnkit eval`'s code on the test part: forecasts
from every origin of the test part, in the series' units, RMSE / MAE / MASE /
sMAPE, NLL and CRPS where the method gives a distribution, and 80%/95% interval
coverage. Prints one table per series and the reference figures of
shared/REFERENCE.md, with CPU seconds of training and of each baseline.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # statsmodels' small fits are 10-50x slower on contended BLAS threads
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
RECIPES = ["configs/forecast-sunspots.yaml", "configs/forecast-co2.yaml"]
REFERENCE = {  # shared/REFERENCE.md, one step ahead over the test period
    "sunspots": "naive 29.9, ARIMA(5,1,5) by AIC 17.10, LSTM-32 window 20 16.34",
    "co2": "naive 1.25, SARIMA(1,1,1)(0,1,1)12 0.306, LSTM on levels 4.74, LSTM on differences 0.328",
}


def train(recipe: str, overrides: list[str], seed: int, quiet: bool) -> tuple[Path, float]:
    """Train a recipe into benchmarks/out/runs/<name>-seed<k>; returns the run dir and CPU seconds."""
    import io

    from rnnkit.config import load_config
    from rnnkit.tasks.registry import get_task
    from rnnkit.train.trainer import Trainer

    name = Path(recipe).stem
    run_dir = OUT / "runs" / f"{name}-seed{seed}"
    config = load_config(recipe, list(overrides) + [f"run.dir={run_dir}", f"run.seed={seed}", "run.overwrite=true"])
    start = time.process_time()
    Trainer(config, get_task(config.task)(config), stream=io.StringIO() if quiet else None).fit()
    return run_dir, time.process_time() - start


def score(run_dir: Path, with_baselines: bool, plot_dir: Path | None):
    """(rows, notes, baseline CPU seconds, task) of a trained run on its test part."""
    from rnnkit.cli import load_run

    task, model, _, _ = load_run(run_dir)
    task.prepare_data()
    seconds = {}
    rows, preds = {}, {}
    methods = task.data_config.baselines if with_baselines else []
    r, p, origins, actual = task.evaluate_all(model, "test", methods=[])
    rows.update(r)
    preds.update(p)
    for name in methods:
        start = time.process_time()
        r, p, _, _ = task.evaluate_all(model, "test", methods=[name])
        seconds[name] = time.process_time() - start
        rows[name], preds[name] = r[name], p[name]
    if plot_dir is not None:
        import argparse as ap

        plot_dir.mkdir(parents=True, exist_ok=True)
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # the chart only; the table is printed below
            task.report({}, ap.Namespace(split="test", baselines="none", horizon=None, samples=None, seed=0,
                                         plot=str(plot_dir / f"{task.data.series.name}-test.png")))
    return rows, {n: q.note for n, q in preds.items()}, seconds, task


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", action="append", nargs="+", metavar=("RECIPE", "KEY=VALUE"),
                        help="a recipe and its overrides (repeatable; default: the sunspots and co2 recipes)")
    parser.add_argument("--run", action="append", default=[], help="score a trained run directory as it is")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds of the RNN runs (default 0)")
    parser.add_argument("--no-baselines", action="store_true", help="score the RNN only")
    parser.add_argument("--plots", type=Path, default=None, metavar="DIR", help="write a test-part chart per series")
    parser.add_argument("--verbose", action="store_true", help="show the training progress")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    import numpy as np

    from rnnkit.metrics.forecast import format_table

    jobs = [(r[0], r[1:]) for r in args.recipe] if args.recipe else [(r, []) for r in RECIPES]
    seeds = [int(s) for s in args.seeds.split(",")]
    for recipe, overrides in jobs:
        results, cpu = [], []
        for k, seed in enumerate(seeds):
            run_dir, seconds = train(str(ROOT / recipe) if not Path(recipe).is_absolute() else recipe,
                                     overrides, seed, quiet=not args.verbose)
            cpu.append(seconds)
            results.append(score(run_dir, not args.no_baselines and k == 0, args.plots if k == 0 else None))
        rows, notes, base_seconds, task = results[0]
        if len(seeds) > 1:  # the RNN row of each seed, then their mean
            per_seed = [r["rnn"] for r, *_ in results]
            for seed, row in zip(seeds, per_seed):
                rows[f"rnn seed {seed}"] = row
            rows["rnn"] = {key: float(np.mean([row[key] for row in per_seed])) for key in per_seed[0]}
            spread = np.std([row["rmse"] for row in per_seed])
            notes["rnn"] = f"mean of {len(seeds)} seeds (RMSE sd {spread:.3g})"
        notes["rnn"] = (notes.get("rnn") or "") + f" train {np.mean(cpu):.0f} s CPU/seed; {task.describe_model()}"
        for name, s in base_seconds.items():
            notes[name] = (notes.get(name) or "") + f" ({s:.1f} s CPU)"
        name = task.data.series.name
        title = (f"## {name}: {recipe} {' '.join(overrides)}\n"
                 f"one forecast per test origin, {len(task.windows('test', training_form=False)[2])} origins, "
                 f"horizon {task.data_config.horizon}; reference: {REFERENCE.get(name, '-')}")
        print(format_table(rows, title, notes), flush=True)
        print()
    for run in args.run:
        rows, notes, _, task = score(Path(run), not args.no_baselines, args.plots)
        print(format_table(rows, f"## {run}", notes), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
