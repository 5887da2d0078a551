"""Learning to Execute (Zaremba & Sutskever 2014): accuracy per curriculum at a small CPU budget.

    python benchmarks/learning_to_execute.py                                   # (4,1) and (6,2), 4 curricula
    python benchmarks/learning_to_execute.py --settings 4,1 --epochs 30 --train-size 10000
    python benchmarks/learning_to_execute.py --curricula baseline combined model.hidden_size=400

Trains `configs/execute-A-B.yaml` (a 2-layer LSTM encoder-decoder without attention,
2 x 128 units by default, the paper's 2 x 400 shrunk to fit a CPU budget) once per
curriculum and setting (length A, nesting B) on fresh programs every epoch, and
evaluates the final weights on 1000 test programs at the target level. The naive
curriculum (and the naive half of combined) goes up one level every
`epochs // (2 x levels)` epochs, so it reaches the target halfway through training.

Two figures per run: the paper's measure, the share of output characters predicted
right under teacher forcing (the correct previous characters given), and the stricter
exact match of the whole output decoded greedily. The paper's figures come from a
2 x 400 LSTM trained far longer (on a GPU); they are not reproduced here, only the
ordering of the curricula at a budget a CPU allows.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rnnkit.config import load_config  # noqa: E402
from rnnkit.data.execute import CURRICULA  # noqa: E402
from rnnkit.tasks import get_task  # noqa: E402
from rnnkit.train import Trainer, evaluate  # noqa: E402


def run(setting: tuple[int, int], curriculum: str, args, overrides: list[str], workdir: Path) -> dict:
    length, nesting = setting
    levels = length + nesting - 1
    stage_epochs = max(1, args.epochs // (2 * levels))
    recipe = ROOT / "configs" / f"execute-{length}-{nesting}.yaml"
    config = load_config(str(recipe), [f"data.curriculum={curriculum}", f"data.stage_epochs={stage_epochs}",
                                       f"data.train_size={args.train_size}", f"trainer.max_epochs={args.epochs}",
                                       f"data.test_size={args.test_size}", f"run.threads={args.threads}",
                                       f"run.dir={workdir}", "run.device=cpu", "run.overwrite=true", *overrides])
    task = get_task(config.task)(config)
    start = time.process_time()
    Trainer(config, task, stream=io.StringIO()).fit()
    cpu = time.process_time() - start
    metrics = evaluate(task, task._model, task.eval_batches("test"), device=torch.device("cpu"))
    return {"char_accuracy": metrics["token_accuracy"], "exact_match": metrics["exact_match"],
            "train_cpu_s": round(cpu, 1), "stage_epochs": stage_epochs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="key=value overrides of the recipes")
    p.add_argument("--settings", nargs="+", default=["4,1", "6,2"], help="length,nesting pairs")
    p.add_argument("--curricula", nargs="+", choices=CURRICULA, default=list(CURRICULA))
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--train-size", type=int, default=3200, help="fresh programs per epoch")
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", metavar="PATH", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = [tuple(int(v) for v in s.split(",")) for s in args.settings]
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for setting in settings:
            for curriculum in args.curricula:
                key = f"{setting[0]},{setting[1]}"
                r = run(setting, curriculum, args, args.overrides, Path(tmp) / f"{key}-{curriculum}")
                results.setdefault(key, {})[curriculum] = r
                print(f"# length {setting[0]} nesting {setting[1]} {curriculum}: {json.dumps(r)}", flush=True)
    print(f"\n{args.epochs} epochs x {args.train_size} fresh programs, {' '.join(args.overrides) or 'recipe model'}")
    print("| length, nesting | " + " | ".join(args.curricula) + " |")
    print("|---|" + "---|" * len(args.curricula))
    for key, row in results.items():
        cells = [f"{100 * row[c]['char_accuracy']:.1f}% / {100 * row[c]['exact_match']:.1f}%" for c in args.curricula]
        print(f"| {key} | " + " | ".join(cells) + " |")
    print("(each cell: characters right under teacher forcing, the paper's measure / whole outputs right, greedy)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
