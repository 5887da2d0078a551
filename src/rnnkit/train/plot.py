"""PNG curves of a run (`rnnkit plot RUN_DIR`): losses and metrics, train and validation."""
from __future__ import annotations

import math
from pathlib import Path

from .logging import TRAIN_CSV, VALID_CSV, read_csv

_NOT_METRICS = {"step", "epoch", "lr", "items", "items_per_s", "elapsed_s", "grad_norm", "loss"}


def _moving_average(values: list[float], window: int) -> list[float]:
    out, total, count, buf = [], 0.0, 0, []
    for v in values:
        buf.append(v)
        if math.isfinite(v):
            total += v
            count += 1
        if len(buf) > window:
            old = buf.pop(0)
            if math.isfinite(old):
                total -= old
                count -= 1
        out.append(total / count if count else math.nan)
    return out


def plot_run(run_dir: str | Path, out: str | Path | None = None, smooth: int = 0) -> list[Path]:
    """Write loss.png, optim.png (lr and gradient norm) and one PNG per other metric; return the paths.

    Training curves are drawn raw (faint) and as a moving average of `smooth` steps
    (0: about 1/50 of the run); validation results as points joined by lines.
    Raises ImportError without matplotlib, FileNotFoundError without train.csv.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    train = read_csv(run_dir / TRAIN_CSV)
    valid = read_csv(run_dir / VALID_CSV)
    if not train:
        raise FileNotFoundError(f"{run_dir / TRAIN_CSV}: no training log to plot")
    out = Path(out) if out else run_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    steps = [r["step"] for r in train]
    window = smooth or max(1, len(train) // 50)
    written = []

    def curve(ax, key: str, label: str):
        if key in train[0]:
            values = [r[key] for r in train]
            ax.plot(steps, values, color="tab:blue", alpha=0.25, linewidth=0.8)
            ax.plot(steps, _moving_average(values, window), color="tab:blue",
                    label=f"train {label}" + (f" (mean of {window})" if window > 1 else ""))
        if valid and key in valid[0]:
            ax.plot([r["step"] for r in valid], [r[key] for r in valid], "o-", color="tab:orange",
                    label=f"validation {label}", markersize=4)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()

    fig, ax = plt.subplots(figsize=(8, 5))
    curve(ax, "loss", "loss")
    ax.set_title(f"{run_dir.name}: loss")
    written.append(_save(fig, out / "loss.png"))

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    ax1.plot(steps, [r["lr"] for r in train], color="tab:green")
    ax1.set_ylabel("learning rate")
    ax1.grid(alpha=0.3)
    norms = [r["grad_norm"] for r in train]
    ax2.plot(steps, norms, color="tab:red", alpha=0.4, linewidth=0.8)
    ax2.plot(steps, _moving_average(norms, window), color="tab:red", label="gradient norm (before clipping)")
    clip = _clip_norm(run_dir)
    if clip:
        ax2.axhline(clip, color="black", linestyle="--", linewidth=0.8, label=f"clip_norm {clip:g}")
    if all(n > 0 for n in norms if math.isfinite(n)):
        ax2.set_yscale("log")
    ax2.set_xlabel("step")
    ax2.set_ylabel("‖g‖")
    ax2.grid(alpha=0.3)
    ax2.legend()
    ax1.set_title(f"{run_dir.name}: optimisation")
    written.append(_save(fig, out / "optim.png"))

    metrics = [k for k in (valid[0] if valid else {}) if k not in _NOT_METRICS]
    metrics += [k for k in train[0] if k not in _NOT_METRICS and k not in metrics]
    for key in metrics:
        fig, ax = plt.subplots(figsize=(8, 5))
        curve(ax, key, key)
        ax.set_title(f"{run_dir.name}: {key}")
        written.append(_save(fig, out / f"{key}.png"))
    return written


def _clip_norm(run_dir: Path) -> float:
    try:
        import yaml

        return float(yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]["clip_norm"])
    except (OSError, KeyError, TypeError, ValueError):
        return 0.0


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
