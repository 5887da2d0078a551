"""Logs of a run: CSV metrics (always), TensorBoard events (when installed), progress display.

In the run directory:
    train.csv   one row per optimiser step: step, epoch, loss, grad_norm (before
                clipping), lr, items, items_per_s, elapsed_s, then the task's metrics
    valid.csv   one row per evaluation: step, epoch, then the validation metrics
    train.log   the plain progress and message lines
    tb/         TensorBoard event files (only with the tensorboard package)

Numbers are written with repr(), so a float read back is the float logged, bit for bit.
On a terminal the progress is one live line; elsewhere (CI, pipes) a plain line
every `log_every` steps.
"""
from __future__ import annotations

import csv
import math
import os
import sys
import time
from pathlib import Path
from typing import TextIO

TRAIN_CSV = "train.csv"
VALID_CSV = "valid.csv"


class CsvLog:
    """An append-only CSV file whose columns are fixed by its first row (or existing header)."""

    def __init__(self, path: Path):
        self.path = path
        self.columns: list[str] | None = None
        if path.exists() and path.stat().st_size:
            with open(path, newline="") as f:
                self.columns = next(csv.reader(f), None)
        self.file = None

    def write(self, row: dict) -> None:
        if self.file is None:
            self.file = open(self.path, "a", newline="")
        if self.columns is None:
            self.columns = list(row)
            csv.writer(self.file).writerow(self.columns)
        csv.writer(self.file).writerow([_fmt(row.get(c, "")) for c in self.columns])
        self.file.flush()  # a killed run keeps every row it logged

    def truncate_after(self, step: int) -> None:
        """Drop the rows past `step` (a resumed run rewrites them)."""
        if not self.path.exists():
            return
        text = self.path.read_text()
        if not text.endswith("\n"):  # a row cut short by a kill: drop it
            text = text[: text.rfind("\n") + 1]
        rows = list(csv.reader(text.splitlines()))
        if not rows:
            return
        header, body = rows[0], rows[1:]
        keep = [r for r in body if len(r) == len(header) and int(r[header.index("step")]) <= step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([header, *keep])
        os.replace(tmp, self.path)  # a crash here keeps the old file whole

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _fmt(value) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def read_csv(path: str | Path) -> list[dict]:
    """Rows of a train.csv/valid.csv as dicts of floats (empty list if absent)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) if v not in ("", None) else math.nan for k, v in row.items()}
                for row in csv.DictReader(f)]


class Progress:
    """Step, epoch, loss, throughput, ETA and gradient norm on one line.

    On a terminal the line is redrawn in place (at most 10 times a second); else a
    plain line is printed every `log_every` steps.
    """

    def __init__(self, stream: TextIO, log_every: int = 10, unit: str = "tok"):
        self.stream = stream
        self.live = hasattr(stream, "isatty") and stream.isatty()
        self.log_every = log_every
        self.unit = unit
        self.last_draw = 0.0
        self.width = 0

    def update(self, step: int, total: int | None, epoch: int, loss: float, rate: float,
               grad_norm: float, lr: float, eta_s: float | None) -> str | None:
        """Show the step; return the plain line when one was printed (for train.log)."""
        steps = f"{step}/{total}" if total else f"{step}"
        eta = f" eta {_duration(eta_s)}" if eta_s is not None else ""
        line = (f"step {steps} epoch {epoch} loss {loss:.4f} |g| {grad_norm:.3g} lr {lr:.3g} "
                f"{rate:,.0f} {self.unit}/s{eta}")
        if self.live:
            now = time.monotonic()
            if now - self.last_draw >= 0.1 or step == total:
                self.stream.write("\r" + line.ljust(self.width))
                self.stream.flush()
                self.width, self.last_draw = len(line), now
            return line if step % self.log_every == 0 else None
        if step % self.log_every == 0 or step == total or step == 1:
            self.stream.write(line + "\n")
            self.stream.flush()
            return line
        return None

    def message(self, text: str) -> None:
        if self.live and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.width = 0
        self.stream.write(text + "\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class RunLogger:
    """All logs of a run. Construct with `run_dir=None` on ranks other than 0: it then does nothing."""

    def __init__(self, run_dir: Path | None, *, stream: TextIO | None = None, log_every: int = 10,
                 tensorboard: bool = True, unit: str = "tok"):
        self.run_dir = run_dir
        self.enabled = run_dir is not None
        self.progress = Progress(stream or sys.stderr, log_every, unit)
        self.tb = None
        if not self.enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self.train_csv = CsvLog(run_dir / TRAIN_CSV)
        self.valid_csv = CsvLog(run_dir / VALID_CSV)
        self.log_file = open(run_dir / "train.log", "a")
        if tensorboard:
            self.tb = _tensorboard_writer(run_dir / "tb")

    def truncate_after(self, step: int) -> None:
        if self.enabled:
            self.train_csv.truncate_after(step)
            self.valid_csv.truncate_after(step)

    def train_step(self, row: dict, total: int | None, eta_s: float | None) -> None:
        if not self.enabled:
            return
        self.train_csv.write(row)
        line = self.progress.update(row["step"], total, row["epoch"], row["loss"], row["items_per_s"],
                                    row["grad_norm"], row["lr"], eta_s)
        if line:
            self._file(line)
        if self.tb is not None:
            for key in ("loss", "grad_norm", "lr", "items_per_s"):
                self.tb.add_scalar(f"train/{key}", row[key], row["step"])

    def valid(self, step: int, epoch: int, metrics: dict) -> None:
        if not self.enabled:
            return
        self.valid_csv.write({"step": step, "epoch": epoch, **metrics})
        text = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        self.message(f"valid step {step} epoch {epoch}: {text}")
        if self.tb is not None:
            for key, value in metrics.items():
                self.tb.add_scalar(f"valid/{key}", value, step)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        self.progress.message(text)
        self._file(text)

    def _file(self, line: str) -> None:
        self.log_file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        self.log_file.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        self.train_csv.close()
        self.valid_csv.close()
        self.log_file.close()
        if self.tb is not None:
            self.tb.close()


def _tensorboard_writer(path: Path):
    """A SummaryWriter, or None when tensorboard is not installed (the CSV logs are always there)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(path))


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True
