"""Number words translation (English -> French by default): exact match on unseen test numbers.

    python benchmarks/translate_numbers.py                           # with and without attention
    python benchmarks/translate_numbers.py --variants attention trainer.max_epochs=20
    python benchmarks/translate_numbers.py data.target_lang=de data.target_level=char

Trains `configs/translate-numbers-en-fr.yaml` once per variant (attention: additive
attention with input feeding; none: the plain encoder-decoder, the decoder starting from
the bridged final encoder state), keeps the checkpoint with the best greedy exact match
on the validation numbers, and decodes the test numbers (never seen in training) greedily
and with beam search. Prints exact match, BLEU, chrF and ROUGE-L side by side and the
issue's goal: >= 99.5% exact match en->fr with beam 5.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rnnkit.cli import load_run  # noqa: E402
from rnnkit.config import load_config  # noqa: E402
from rnnkit.decode import BeamSearch, Greedy  # noqa: E402
from rnnkit.metrics.text import text_metrics  # noqa: E402
from rnnkit.tasks import get_task  # noqa: E402
from rnnkit.train import Trainer  # noqa: E402

GOAL = 0.995
VARIANTS = {"attention": ["model.attention=additive", "model.input_feeding=true"],
            "none": ["model.attention=none"]}


def run_variant(recipe: str, overrides: list[str], workdir: Path, beam: int) -> dict:
    config = load_config(recipe, overrides + [f"run.dir={workdir}", "run.device=cpu", "run.overwrite=true"])
    task = get_task(config.task)(config)
    start = time.process_time()
    wall = time.perf_counter()
    result = Trainer(config, task, stream=sys.stderr).fit()
    cpu, wall = time.process_time() - start, time.perf_counter() - wall
    task, model, _, ckpt = load_run(workdir, "best", "cpu")
    task.prepare_data()
    test = task.splits["test"]
    out = {"steps": result.step if hasattr(result, "step") else None, "train_cpu_s": round(cpu, 1),
           "train_wall_s": round(wall, 1), "checkpoint": str(ckpt), "test_pairs": len(test)}
    for name, strategy in (("greedy", Greedy()), (f"beam{beam}", BeamSearch(beam))):
        t = time.perf_counter()
        hyps = [row[0][0] for row in task.translate(model, test.source_texts, strategy)]
        out[name] = {**text_metrics(hyps, test.target_texts), "decode_s": round(time.perf_counter() - t, 1)}
        out[name]["errors"] = [(s, h, r) for s, h, r in zip(test.source_texts, hyps, test.target_texts) if h != r][:5]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="key=value overrides of the recipe")
    p.add_argument("--recipe", default=str(ROOT / "configs" / "translate-numbers-en-fr.yaml"))
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", metavar="PATH", default=None, help="also write the figures as JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            overrides = VARIANTS[variant] + args.overrides + [f"run.threads={args.threads}"]
            results[variant] = run_variant(args.recipe, overrides, Path(tmp) / variant, args.beam)
            print(f"# {variant}: {json.dumps(results[variant], ensure_ascii=False)}", flush=True)
    beam = f"beam{args.beam}"
    print(f"\nrecipe {Path(args.recipe).name} {' '.join(args.overrides)}")
    print(f"| attention | test pairs | exact match greedy | exact match beam {args.beam} | BLEU (beam) | chrF (beam) "
          f"| ROUGE-L (beam) | train CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for variant, r in results.items():
        g, b = r["greedy"], r[beam]
        print(f"| {variant} | {r['test_pairs']} | {100 * g['exact_match']:.2f}% | {100 * b['exact_match']:.2f}% | "
              f"{b['bleu']:.2f} | {b['chrf']:.2f} | {b['rouge_l']:.4f} | {r['train_cpu_s']:.0f} |")
    for variant, r in results.items():
        met = "met" if r[beam]["exact_match"] >= GOAL else "NOT met"
        print(f"{variant}: beam {args.beam} exact match {100 * r[beam]['exact_match']:.2f}% vs goal "
              f"{100 * GOAL:.1f}% ({met})")
        for s, h, ref in r[beam]["errors"]:
            print(f"    {s!r} -> {h!r} (reference {ref!r})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
