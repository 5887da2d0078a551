"""`rnnkit gradients`: how far back gradients reach: |dL_T/dh_k| against the lag T − k for a
trained run or a recipe's fresh model, several cells compared on one task, the spectral
radius of an Elman RNN's W_hh, and gradient-norm clipping on an exploding case
(rnnkit.inspect.gradients)."""
from __future__ import annotations

import tempfile
from pathlib import Path

NAME = "gradients"
HELP = "plot |dL_T/dh_k| against the lag T-k (log scale): a run, a recipe, cells compared, spectral radius, clipping"
EXAMPLES = """examples:
  rnnkit gradients runs/charlm-stdlib --plot grads.png               # a trained run, every layer
  rnnkit gradients configs/adding.yaml --compare rnn,irnn,gru,lstm --plot cells.png
  rnnkit gradients configs/adding.yaml --compare rnn,irnn,gru,lstm --train-steps 300 --plot trained.png
  rnnkit gradients --spectral 4,1,0.25 --plot spectral.png           # untrained Elman RNN, W_hh scaled
  rnnkit gradients --clipping --plot clipping.png                    # an exploding Elman RNN, with/without clipping

A recipe may be followed by key=value overrides (data.length=200 model.hidden_size=128).
L_T is the loss at the last step (charlm: the last token's prediction; classify: the
sequence's loss); norms are averaged over --batch sequences."""


def add_arguments(parser) -> None:
    parser.add_argument("target", nargs="?", metavar="RUN_DIR|RECIPE", help="a run directory or a YAML recipe")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides")
    parser.add_argument("--plot", metavar="PNG", default="gradients.png", help="where to draw (default gradients.png)")
    parser.add_argument("--compare", metavar="CELLS", default="",
                        help="a recipe: build the same model with each of these cells (e.g. rnn,irnn,gru,lstm)")
    parser.add_argument("--train-steps", type=int, default=0, metavar="K",
                        help="a recipe: train each model K steps first (default 0: at initialisation)")
    parser.add_argument("--batch", type=int, default=32, metavar="N", help="sequences averaged over (default 32)")
    parser.add_argument("--length", type=int, default=200, metavar="L",
                        help="charlm: tokens per sequence (default 200); other tasks use their own lengths")
    parser.add_argument("--spectral", metavar="RADII", default="",
                        help="untrained Elman RNNs with W_hh scaled to these spectral radii, e.g. 4,0.25")
    parser.add_argument("--clipping", action="store_true",
                        help="loss curves of an exploding Elman RNN on the adding problem with and without clipping")
    parser.add_argument("--steps", type=int, default=300, help="--clipping: training steps (default 300)")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    import numpy as np
    import torch

    from ..cli import CliError
    from ..inspect import gradients as g

    torch.set_num_threads(1)  # small sequential work; a second thread only adds overhead
    for name, value in (("--batch", args.batch), ("--length", args.length), ("--steps", args.steps)):
        if value < 1:
            raise CliError(f"{name} must be >= 1, got {value}")
    if args.train_steps < 0:
        raise CliError(f"--train-steps must be >= 0, got {args.train_steps}")
    plot = Path(args.plot)
    plot.parent.mkdir(parents=True, exist_ok=True)
    if args.spectral:
        try:
            radii = [float(r) for r in args.spectral.split(",")]
        except ValueError:
            raise CliError(f"--spectral {args.spectral!r}: expected numbers separated by commas, e.g. 4,0.25") from None
        if not all(r > 0 for r in radii):
            raise CliError(f"--spectral {args.spectral!r}: every spectral radius must be > 0")
        profiles = g.spectral_profiles(radii, ("tanh", "relu"), seed=args.seed, batch=args.batch)
        _report(profiles)
        length = profiles[0].norms.shape[1]
        references = {"ρ^lag (a linear RNN)" if k == 0 else f"_ρ={r:g}": r ** np.arange(length, dtype=float)
                      for k, r in enumerate(radii)}
        g.plot_profiles(profiles, plot, "untrained Elman RNN (H = 64), W_hh = ρ·orthogonal, adding-problem inputs",
                        relative=True, references=references)
        print(f"wrote {plot}")
        return 0
    if args.clipping:
        curves = g.clipping_curves((0.0, 1.0), steps=args.steps, seed=args.seed, batch=args.batch)
        for clip, losses in curves.items():
            finite = losses[np.isfinite(losses)]
            what = "no clipping" if clip == 0 else f"clip_norm {clip:g}"
            end = (f"diverged (loss not finite) at step {len(finite)}" if len(finite) < len(losses)
                   else f"final loss {finite[-10:].mean():.4f} (mean of the last 10 steps)")
            print(f"{what:>14}: max loss {finite.max():.3g}, {end}")
        g.plot_curves(curves, plot, "Elman tanh RNN (H = 64), spectral radius 1.5, adding problem T = 50, SGD lr 0.1")
        print(f"wrote {plot}")
        return 0
    if not args.target:
        raise CliError("give a run directory or a recipe (or --spectral RADII, or --clipping)")
    target = Path(args.target)
    if not target.exists():
        raise FileNotFoundError(f"{target}: no such run directory or recipe")
    if target.is_dir():
        if args.compare or args.overrides or args.train_steps:
            raise CliError("--compare, --train-steps and key=value overrides need a recipe, not a run directory")
        from ..cli import load_run

        task, model, config, ckpt = load_run(target, args.checkpoint, "cpu")
        task.prepare_data()
        profiles = [_measure(task, model, args, f"{target.name} ({ckpt.name})")]
        layers = profiles[0].norms.shape[0]
        per_layer = [g.LagProfile(f"layer {k}", profiles[0].norms[k:k + 1], profiles[0].counts)
                     for k in range(layers)]
        _report(per_layer)
        g.plot_profiles(per_layer, plot, f"{profiles[0].label}: {profiles[0].description}")
    else:
        cells = [c.strip() for c in args.compare.split(",") if c.strip()] or [None]
        profiles = [_from_recipe(target, args, cell) for cell in cells]
        _report(profiles)
        state = f"after {args.train_steps} training steps" if args.train_steps else "at initialisation"
        g.plot_profiles(profiles, plot, f"{target.name}, {state}: {profiles[0].description}")
    print(f"wrote {plot}")
    return 0


def _measure(task, model, args, label: str):
    """One LagProfile of `model` on a batch of the task's validation data."""
    from ..inspect.gradients import gradient_by_lag, last_step_loss

    batch = _batch(task, args)
    loss_of, description, lengths = last_step_loss(task, model, batch)
    model.eval()  # no dropout: the gradient of the function itself
    profile = gradient_by_lag(model, loss_of, lengths, label=label)
    profile.description = description
    return profile


def _batch(task, args):
    """A validation batch of --batch sequences (charlm: --length tokens each)."""
    import torch

    from ..cli import CliError
    from ..tasks.base import Batch
    from ..tasks.charlm import CharLM
    from ..train.batch import slice_rows

    if isinstance(task, CharLM):
        tokens = task.tokens("valid")
        L = args.length
        if len(tokens) < (L + 1) * args.batch:
            raise CliError(f"the validation split has {len(tokens)} tokens, fewer than --batch {args.batch} "
                           f"sequences of --length {L} + 1")
        stride = len(tokens) // args.batch
        rows = torch.stack([tokens[i * stride: i * stride + L + 1].long() for i in range(args.batch)])
        return Batch(inputs=rows[:, :-1], targets=rows[:, 1:])
    batches = task.valid_batches() or task.eval_batches("test")
    return slice_rows(next(iter(batches)), slice(0, args.batch))


def _from_recipe(recipe: Path, args, cell: str | None):
    """Build (and with --train-steps, train) the recipe's model with `cell`; measure it."""
    import dataclasses
    import io

    import torch

    from ..cli import CliError, load_run
    from ..config import ConfigError, load_config, read_yaml
    from ..tasks.registry import get_task

    overrides = list(args.overrides)
    label = "recipe model"
    if cell is not None:
        overrides.append(f"model.cell={cell}")
        label = {"rnn": "Elman tanh", "irnn": "IRNN (ReLU, W_hh = I)"}.get(cell, cell.upper())
    try:
        task_cls = get_task(str(read_yaml(recipe).get("task")))
        has_chrono = "chrono" in {f.name for f in dataclasses.fields(task_cls.ModelConfig)}
        if cell is not None and cell != "lstm" and has_chrono:
            overrides.append("model.chrono=0")  # chrono initialisation is for LSTM gates only
        config = load_config(recipe, overrides)
    except ConfigError as err:
        raise CliError(f"{recipe}: {err}") from None
    chrono = getattr(config.model, "chrono", 0)
    if chrono:
        label += f" (chrono {chrono})"
    if args.train_steps:
        from ..train import Trainer

        with tempfile.TemporaryDirectory(prefix="rnnkit-gradients-") as tmp:
            config = load_config(recipe, overrides + [f"trainer.max_steps={args.train_steps}", f"run.dir={tmp}/run",
                                                      "run.overwrite=true", "run.device=cpu",
                                                      "run.tensorboard=false"])
            Trainer(config, task_cls(config), stream=io.StringIO()).fit()
            task, model, _, _ = load_run(f"{tmp}/run", "last", "cpu")
            task.prepare_data()
            return _measure(task, model, args, label)
    task = task_cls(config)
    task.prepare_data()
    torch.manual_seed(config.run.seed)
    model = task.build_model()
    return _measure(task, model, args, label)


def _report(profiles) -> None:
    import numpy as np

    for p in profiles:
        norms = p.norms[-1]
        reach = p.counts > 0
        lags = [lag for lag in (0, 1, 10, 50, 100, 200, 500) if lag < len(norms) and reach[lag]]
        shown = "  ".join(f"lag {lag}: {norms[lag]:.3g}" for lag in lags)
        top = int(np.flatnonzero(reach)[-1])
        ratio = norms[top] / norms[0] if norms[0] > 0 else float("nan")
        print(f"{p.label:>34}  {shown}  |  lag {top} / lag 0 = {ratio:.3g}")
