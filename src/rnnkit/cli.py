"""The `rnnkit` command: train, eval, sample, predict, plot, info, and the subcommands
of rnnkit/commands/ (forecast, translate, attention, generate, neurons, gradients,
embeddings, word2vec).

    rnnkit train configs/charlm-stdlib.yaml model.hidden_size=512 trainer.bptt=100
    rnnkit train resume=runs/charlm                 # continue a run exactly where it stopped
    rnnkit eval runs/charlm --split test
    rnnkit sample runs/charlm --prime "def " --temperature 0.8
    rnnkit plot runs/charlm
    rnnkit info runs/charlm
    torchrun --nproc_per_node 2 -m rnnkit train configs/x.yaml   # data parallel

The task-specific options of `eval` and `sample` come from the task
(`Task.add_arguments`); `rnnkit sample RUN_DIR --help` lists them.
"""
from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
from pathlib import Path

EXAMPLES = {
    "train": """examples:
  rnnkit train configs/charlm-stdlib.yaml
  rnnkit train configs/charlm-stdlib.yaml model.hidden_size=512 trainer.bptt=100 run.dir=runs/big
  rnnkit train resume=runs/big                      # continue exactly (or: --resume runs/big)
  rnnkit train configs/charlm-stdlib.yaml --print-config
  rnnkit train configs/charlm-stdlib.yaml --keys    # every key with its type, default and help
  torchrun --nproc_per_node 2 -m rnnkit train configs/charlm-stdlib.yaml

A recipe is YAML with `task:` and the sections data, model, optim, schedule,
trainer, run. Overrides are dotted key=value pairs applied after the recipe;
values are read as YAML (512, 1e-3, true, [0.9, 0.99], null).""",
    "eval": """examples:
  rnnkit eval runs/charlm                     # the best checkpoint on the validation split
  rnnkit eval runs/charlm --split test --checkpoint last --json""",
    "sample": """examples:
  rnnkit sample runs/charlm --prime "def " --temperature 0.8 --length 500
  rnnkit sample runs/charlm --help            # the options of this run's task""",
    "predict": """examples:
  rnnkit predict runs/japanese-vowels --input new.csv --output predictions.csv""",
    "plot": """examples:
  rnnkit plot runs/charlm                     # writes runs/charlm/plots/*.png
  rnnkit plot runs/charlm --out /tmp/plots --smooth 50""",
    "info": """examples:
  rnnkit info runs/charlm
  rnnkit info runs/charlm --json""",
}


class CliError(Exception):
    """A usage problem reported as `rnnkit: error: ...` with exit status 2."""


def _import_modules(modules: list[str] | None) -> None:
    for name in modules or []:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise CliError(f"--import {name}: {err}") from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                        help="import MODULE first (it may register tasks); repeatable")


def _run_dir_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (or one checkpoint directory in it)")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best",
                        help="which checkpoint of the run (default: best, else last)")
    parser.add_argument("--device", default="auto", help="auto (cuda if present, else cpu), cpu, cuda, cuda:N")
    _common(parser)


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="rnnkit", formatter_class=fmt,
                                     description="Recurrent neural networks: train, evaluate, sample, inspect runs.",
                                     epilog="\n\n".join(EXAMPLES.values()))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    train = sub.add_parser("train", help="train from a YAML recipe with key=value overrides",
                           description="Train from a YAML recipe; dotted key=value overrides follow it.",
                           epilog=EXAMPLES["train"], formatter_class=fmt)
    train.add_argument("items", nargs="*", metavar="RECIPE|key=value",
                       help="the recipe file, then overrides such as model.hidden_size=512; resume=RUN_DIR continues a run")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    train.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    train.add_argument("--keys", action="store_true", help="list every config key (type, default, help) and exit")
    _common(train)

    for name, text in (("eval", "evaluate a run's checkpoint on a data split"),
                       ("sample", "generate from a run's checkpoint (task-specific options)"),
                       ("predict", "predict for new data with a run's checkpoint (task-specific options)")):
        p = sub.add_parser(name, help=text, description=text + ".", epilog=EXAMPLES[name], formatter_class=fmt)
        _run_dir_options(p)
        if name == "sample":
            p.add_argument("--threads", type=int, default=0,
                           help="CPU threads (default: 1 on CPU, where generation is one token at a time)")
        if name == "eval":
            p.add_argument("--split", default="valid", help="data split (default: valid)")
            p.add_argument("--json", action="store_true", help="print the metrics as JSON")

    plot = sub.add_parser("plot", help="write PNG loss and metric curves of a run",
                          description="Write PNG curves (train and validation) of a run with matplotlib.",
                          epilog=EXAMPLES["plot"], formatter_class=fmt)
    plot.add_argument("run_dir", metavar="RUN_DIR")
    plot.add_argument("--out", metavar="DIR", help="output directory (default: RUN_DIR/plots)")
    plot.add_argument("--smooth", type=int, default=0, metavar="N",
                      help="moving-average window for the training curves (default: about 1/50 of the steps)")
    _common(plot)

    info = sub.add_parser("info", help="print a run's config, size, step and best metric",
                          description="Print a run's config, parameter count, step and best metric.",
                          epilog=EXAMPLES["info"], formatter_class=fmt)
    info.add_argument("run_dir", metavar="RUN_DIR")
    info.add_argument("--json", action="store_true", help="print as JSON")
    _common(info)

    from .commands import discover

    for module in discover():  # translate, generate, neurons, ... (rnnkit/commands/)
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP + ".",
                           epilog=getattr(module, "EXAMPLES", None), formatter_class=fmt)
        module.add_arguments(p)
        _common(p)
        p.set_defaults(plugin=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `rnnkit` and `python -m rnnkit`; returns the exit status."""
    from .config import ConfigError
    from .tasks.base import TaskCommandError
    from .tasks.registry import UnknownTaskError
    from .train import distributed
    from .train.checkpoint import CheckpointError
    from .train.trainer import DivergenceError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # eval/sample: the run's task adds options, so parse those in two passes
    if argv and argv[0] in ("eval", "sample", "predict"):
        args = _parse_with_task_options(parser, argv)
    else:
        # overrides may follow options (`train x.yaml --import m a.b=1`): collect the stray ones
        args, extra = parser.parse_known_args(argv)
        if args.command != "train" or any(e.startswith("-") for e in extra):
            parser.parse_args(argv)  # reports the unrecognised arguments
        args.items = getattr(args, "items", []) + extra
    try:
        _import_modules(getattr(args, "imports", None))
        plugin = getattr(args, "plugin", None)
        if plugin is not None:
            return plugin.run(args)
        return COMMANDS[args.command](args, argv)
    except (ConfigError, CliError, UnknownTaskError) as err:
        print(f"rnnkit: error: {_message(err)}", file=sys.stderr)
        return 2
    except (CheckpointError, DivergenceError, TaskCommandError, FileNotFoundError) as err:
        print(f"rnnkit: error: {_message(err)}", file=sys.stderr)
        return 1
    finally:
        distributed.shutdown()


def _message(err: Exception) -> str:
    text = str(err.args[0]) if isinstance(err, LookupError) and err.args else str(err)
    return text.removeprefix("config error: ")


def _parse_with_task_options(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse `eval`/`sample` arguments including the options the run's task adds."""
    command = argv[0]
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("run_dir", nargs="?")
    first.add_argument("--checkpoint", default="best")
    first.add_argument("--import", dest="imports", action="append")
    known, _ = first.parse_known_args(argv[1:])
    if known.run_dir is None or known.run_dir.startswith("-"):
        return parser.parse_args(argv)  # prints usage or help without task options
    try:
        _import_modules(known.imports)
        task_cls, _, _ = _run_task(known.run_dir, known.checkpoint)
    except Exception:  # noqa: BLE001 - a bad run dir is reported by the command itself
        return parser.parse_args(argv)
    sub = parser._subparsers._group_actions[0].choices[command]  # the subcommand's parser
    group = sub.add_argument_group(f"options of task {task_cls.name!r}")
    task_cls.add_arguments(command, group)
    return parser.parse_args(argv)


def _run_task(run_dir: str, which: str = "best"):
    """(task class, config, checkpoint path) of a run directory."""
    from .config import build_config
    from .tasks.registry import get_task
    from .train.checkpoint import find_checkpoint, read_config

    order = ("best", "last") if which == "best" else ("last", "best")
    ckpt = find_checkpoint(run_dir, prefer=order)
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint found (expected {run_dir}/best or {run_dir}/last)")
    config = build_config(read_config(ckpt))
    return get_task(config.task), config, ckpt


def load_run(run_dir: str | Path, which: str = "best", device: str = "auto"):
    """Rebuild a trained run for inference: returns (task, model in eval mode, config, checkpoint dir)."""
    from .config import to_dict
    from .train.checkpoint import load_checkpoint
    from .train.device import resolve_device

    task_cls, config, ckpt = _run_task(str(run_dir), which)
    task = task_cls(config)
    task.load_assets(ckpt)
    dev = resolve_device(device)
    model = task.build_model().to(dev)
    load_checkpoint(ckpt, model, task=config.task, model_config=to_dict(config.model),
                    model_defaults=to_dict(type(config.model)()), device=dev)
    model.eval()
    return task, model, config, ckpt


# ----------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace, argv: list[str]) -> int:
    from .config import build_config, describe_keys, dump_config, load_config, read_yaml, apply_overrides
    from .tasks.registry import get_task
    from .train.checkpoint import find_checkpoint, read_config
    from .train.trainer import Trainer

    recipe, overrides, resume = None, [], args.resume
    for item in args.items:
        if item.startswith("resume="):
            resume = item.split("=", 1)[1]
        elif "=" in item:
            overrides.append(item)
        elif recipe is None:
            recipe = item
        else:
            raise CliError(f"unexpected argument {item!r}: one recipe, then key=value overrides")
    if args.keys:
        data = apply_overrides(read_yaml(recipe) if recipe else {}, overrides)
        if "task" not in data:
            raise CliError("--keys needs a recipe or task=NAME to know the task's data and model keys")
        print(describe_keys(get_task(str(data["task"]))))
        return 0
    if recipe is None and resume is None:
        raise CliError("train needs a recipe (rnnkit train configs/x.yaml) or resume=RUN_DIR")
    if resume is not None:
        resume_dir = Path(resume)
        if recipe is None:  # the run's own config, with any overrides on top
            ckpt = find_checkpoint(resume_dir, prefer=("last",))
            source = ckpt if ckpt is not None else resume_dir
            if not (source / "config.yaml").exists():
                raise CliError(f"resume={resume}: no run there (no config.yaml)")
            base = read_config(source)
            config = build_config(apply_overrides(base, overrides + [f"run.dir={resume_dir}"]))
        else:
            config = load_config(recipe, overrides + [f"run.dir={resume_dir}"])
    else:
        config = load_config(recipe, overrides)
    if args.print_config:
        print(dump_config(config), end="")
        return 0
    task = get_task(config.task)(config)
    command = " ".join(shlex.quote(a) for a in ["rnnkit", *argv])
    result = Trainer(config, task, resume=resume, command=command).fit()
    return 0 if result is not None else 1


def cmd_eval(args: argparse.Namespace, argv: list[str]) -> int:
    from .train.device import resolve_precision

    task, model, config, ckpt = load_run(args.run_dir, args.checkpoint, args.device)
    task.prepare_data()
    device = next(model.parameters()).device
    metrics = task.evaluate_split(model, args.split, args, device=device,
                                  precision=resolve_precision(config.trainer.precision, device))
    if args.json:
        print(json.dumps({"checkpoint": str(ckpt), "split": args.split, **metrics}))
    else:
        print(f"# {ckpt} on split {args.split}")
        task.report(metrics, args)
    return 0


def cmd_sample(args: argparse.Namespace, argv: list[str]) -> int:
    import torch

    task, model, _, _ = load_run(args.run_dir, args.checkpoint, args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    elif next(model.parameters()).device.type == "cpu":
        torch.set_num_threads(1)  # one token at a time: a second thread only adds waiting
    task.sample(model, args)
    return 0


def cmd_predict(args: argparse.Namespace, argv: list[str]) -> int:
    task, model, _, _ = load_run(args.run_dir, args.checkpoint, args.device)
    task.predict(model, args)
    return 0


def cmd_info(args: argparse.Namespace, argv: list[str]) -> int:
    import yaml

    from .train.checkpoint import count_parameters, find_checkpoint, read_config, read_state

    run_dir = Path(args.run_dir)
    checkpoints = {}
    for name in ("last", "best"):
        ckpt = find_checkpoint(run_dir, prefer=(name,))
        if ckpt is not None:
            st = read_state(ckpt)["train"]
            checkpoints[name] = {"path": str(ckpt), "step": st["step"], "epoch": st["epoch"]}
    if not checkpoints:
        raise FileNotFoundError(f"{run_dir}: no checkpoint found (expected {run_dir}/last)")
    main_ckpt = Path(checkpoints.get("last", checkpoints.get("best"))["path"])
    state = read_state(main_ckpt)
    config = read_config(main_ckpt)
    train = state["train"]
    info = {"run_dir": str(run_dir), "task": config.get("task"), "parameters": count_parameters(main_ckpt),
            "step": train["step"], "epoch": train["epoch"], "items_seen": train.get("items_seen"),
            "train_time_s": round(train.get("train_time_s", 0.0), 1),
            "best": {"metric": config["trainer"]["metric"], "value": train["best_value"], "step": train["best_step"]},
            "checkpoints": checkpoints, "format_version": state.get("format_version"), "config": config}
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    best = info["best"]
    best_text = (f"{best['metric']} {best['value']:.6g} at step {best['step']}"
                 if best["value"] is not None else "none (no validation yet)")
    print(f"run        {run_dir}")
    print(f"task       {info['task']}")
    print(f"parameters {info['parameters']:,}")
    print(f"step       {info['step']} (epoch {info['epoch']}, {info['train_time_s']} s of training)")
    print(f"best       {best_text}")
    for name, c in checkpoints.items():
        print(f"{name:<10} {c['path']} (step {c['step']})")
    print("config:")
    print("  " + yaml.safe_dump(config, sort_keys=False, default_flow_style=None).replace("\n", "\n  ").rstrip())
    return 0


def cmd_plot(args: argparse.Namespace, argv: list[str]) -> int:
    from .train.plot import plot_run

    try:
        written = plot_run(args.run_dir, out=args.out, smooth=args.smooth)
    except ImportError:
        raise CliError("rnnkit plot needs matplotlib: pip install 'rnnkit[plot]'") from None
    for path in written:
        print(path)
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "predict": cmd_predict, "info": cmd_info, "plot": cmd_plot}
