"""The Trainer: one loop for every task, full and truncated BPTT, clipping, evaluation, checkpoints.

    trainer = Trainer(config, task)          # config: rnnkit.config.Config; task: a Task
    result = trainer.fit()                   # trains, logs and checkpoints into config.run_dir

`fit` reads top to bottom: set up processes, device and seeds; build data and
model; restore a checkpoint when resuming; then for each batch: forward from the
carried state, backward, measure and clip the global gradient norm, guard against
NaN/Inf, step the optimiser and schedule, detach the state at the chunk
boundary, log; evaluate every `eval_every` steps and at each epoch end, keep the
best and last checkpoints, stop early when the metric stops improving.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, TextIO

import torch
from torch import nn

from ..config import Config, ConfigError, config_to_dict, dump_config, to_dict
from ..layers.kernels.denormals import flush_denormals
from . import distributed
from .batch import Batch
from .averaging import WeightAverage
from .checkpoint import (CheckpointError, find_checkpoint, load_carry, load_checkpoint,
                         load_scheduler_state, load_training_weights, pack_state, rng_state,
                         save_checkpoint, set_rng_state, unpack_state, write_text_atomic)
from .device import autocast, resolve_device, resolve_precision, seed_everything
from .logging import RunLogger
from .optim import Schedule, build_optimizer, clip_gradients, improved
from .tbptt import detach_state

# entries of a run directory that `run.overwrite=true` may delete (nothing else is touched)
RUN_ENTRIES = ("last", "best", "train.csv", "valid.csv", "train.log", "tb", "config.yaml", "command.txt")


class DivergenceError(RuntimeError):
    """The loss or gradient became NaN/Inf; the message names the step and the last good checkpoint."""


@dataclass
class TrainState:
    """Where training is; saved in trainer_state.json and restored on resume."""

    step: int = 0                 # optimiser steps taken (skipped bad batches count)
    epoch: int = 0                # current epoch, 0-based
    batch: int = 0                # batches of the current epoch already consumed
    best_value: float | None = None
    best_step: int | None = None
    bad_evals: int = 0            # evaluations since the last improvement (early stopping)
    skips: int = 0                # consecutive non-finite batches skipped
    last_eval_step: int = -1
    items_seen: int = 0
    train_time_s: float = 0.0


@dataclass
class TrainResult:
    """What `fit` returns."""

    run_dir: Path
    step: int
    epoch: int
    stop_reason: str
    best_value: float | None = None
    best_step: int | None = None
    last_valid: dict = field(default_factory=dict)


@torch.no_grad()
def evaluate(task, model: nn.Module, batches: Iterable[Batch], *, device: torch.device,
             precision: str = "fp32", max_batches: int = 0,
             dist_info: distributed.DistInfo | None = None) -> dict[str, float]:
    """Average loss and metrics of `model` over `batches`, weighted by each batch's size.

    Streamed batches carry the state from chunk to chunk as in training. Under
    data parallelism each rank evaluates its rows and the sums are all-reduced,
    so every rank gets the same numbers. Returns `task.summarize(means)`; an empty
    dict when there are no batches.
    """
    dist_info = dist_info or distributed.DistInfo()
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    weight = 0.0
    state = None
    for i, batch in enumerate(batches):
        if max_batches and i >= max_batches:
            break
        batch = batch.shard(dist_info.rank, dist_info.world_size).to(device)
        if not batch.carry:
            state = None
        with autocast(device, precision):
            out = task.compute_loss(model, batch, state)
        state = out.state if batch.carry else None
        n = batch.num_items
        for key, value in {"loss": out.loss, **out.metrics}.items():
            sums[key] = sums.get(key, 0.0) + float(value) * n
        weight += n
    model.train(was_training)
    keys = sorted(sums)
    totals = distributed.all_reduce_sum(torch.tensor([weight] + [sums[k] for k in keys], dtype=torch.float64))
    if totals[0] == 0:
        return {}
    means = {k: float(totals[i + 1] / totals[0]) for i, k in enumerate(keys)}
    means = {"loss": means.pop("loss"), **means}
    return task.summarize(means)


class Trainer:
    """Trains `task` under `config`.

    Args:
        config: the run Config (its `trainer`, `optim`, `schedule`, `run` sections drive the loop).
        task: a Task instance built with the same config.
        resume: a run or checkpoint directory to continue from exactly (None: start afresh).
        command: the command line, written to RUN_DIR/command.txt.
        stream: where progress goes (default stderr).
    """

    def __init__(self, config: Config, task, *, resume: str | Path | None = None,
                 command: str | None = None, stream: TextIO | None = None):
        self.config, self.task = config, task
        self.resume = Path(resume) if resume is not None else None
        self.command = command
        self.stream = stream or sys.stderr

    def fit(self) -> TrainResult:
        # subnormal floats read and come out as 0 on this thread while training: in a long
        # backward pass they otherwise slow every update many times over (layers/kernels/denormals.py)
        with flush_denormals():
            return self._fit()

    def _fit(self) -> TrainResult:
        cfg, task, tc = self.config, self.task, self.config.trainer

        # --- processes, device, seeds: every rank makes the same decisions from the same inputs
        dist_info = distributed.from_environment()
        device = resolve_device(cfg.run.device, dist_info.local_rank)
        distributed.init(dist_info, device)
        precision = resolve_precision(tc.precision, device)
        seed_everything(cfg.run.seed, cfg.run.deterministic, cfg.run.threads, device)
        run_dir = cfg.run_dir
        ckpt = self._checkpoint_to_resume(run_dir)

        # --- data and model
        if ckpt is not None:
            task.load_assets(ckpt)
        task.prepare_data()
        model = task.build_model().to(device)
        optimizer = build_optimizer(cfg.optim, model.parameters())
        schedule = Schedule(cfg.schedule, cfg.optim.lr, tc.max_steps, tc.mode, tc.min_delta)
        state = TrainState()
        carry = None  # the recurrent state handed from chunk to chunk (detached)
        if ckpt is not None:
            saved = load_checkpoint(ckpt, model, optimizer=optimizer, task=cfg.task,
                                    model_config=to_dict(cfg.model), model_defaults=to_dict(type(cfg.model)()),
                                    device=device)
            state = TrainState(**saved["train"])
            schedule.load_state_dict(load_scheduler_state(ckpt) or schedule.state_dict())
            carry = self._restore_rng_and_carry(saved, ckpt, dist_info, device)
        elif dist_info.rank > 0:
            torch.manual_seed(cfg.run.seed + dist_info.rank)  # own dropout masks; weights come from rank 0
        # weight averaging: a checkpoint's model weights are the average; the trained ones lie beside them
        average = WeightAverage(model, tc.ema_decay, tc.ema_start) if tc.ema_decay else None
        trained = load_training_weights(ckpt, device) if ckpt is not None else None
        if trained is not None:
            with torch.no_grad():
                for name, t in model.state_dict().items():
                    if name in trained:
                        t.copy_(trained[name])
        params = [p for p in model.parameters() if p.requires_grad]
        ddp = model
        if dist_info.enabled:
            ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

        # --- run directory and logs (rank 0 only)
        if dist_info.is_main:
            self._write_run_files(run_dir, resumed=self.resume is not None)
        log = RunLogger(run_dir if dist_info.is_main else None, stream=self.stream, log_every=tc.log_every,
                        tensorboard=cfg.run.tensorboard, unit=getattr(task, "unit", "tok"))
        if dist_info.is_main:
            log.truncate_after(state.step)  # a resumed run logs again the steps after its checkpoint
            n_params = sum(p.numel() for p in model.parameters())
            start = f"resuming from {ckpt} at step {state.step}" if ckpt else "training"
            procs = f", {dist_info.world_size} processes" if dist_info.enabled else ""
            log.message(f"{start}: task {cfg.task}, {n_params:,} parameters, device {device}, {precision}{procs}"
                        + (f", weights averaged (decay {tc.ema_decay:g} from step {tc.ema_start})"
                           if average else ""))

        time_base, fit_start, steps_at_start = state.train_time_s, time.perf_counter(), state.step
        last_valid: dict[str, float] = {}

        def checkpoint(name: str) -> None:
            state.train_time_s = time_base + time.perf_counter() - fit_start
            if average is None:
                self._save(run_dir / name, model, optimizer, schedule, state, carry, dist_info)
                return
            with average.swapped() as trained_weights:
                self._save(run_dir / name, model, optimizer, schedule, state, carry, dist_info, trained_weights)

        def evaluate_and_keep_best() -> bool:
            """Evaluate (the average, with weight averaging), log, keep best/last checkpoints;
            return True to stop early."""
            with average.swapped() if average else contextlib.nullcontext():
                metrics = evaluate(task, model, task.valid_batches(), device=device, precision=precision,
                                   max_batches=tc.eval_batches, dist_info=dist_info)
            state.last_eval_step = state.step
            if metrics:
                last_valid.clear()
                last_valid.update(metrics)
                log.valid(state.step, state.epoch, metrics)
                if tc.metric not in metrics:
                    raise ConfigError("trainer.metric", tc.metric,
                                      f"a validation metric of task {cfg.task!r}: {', '.join(metrics)}")
                value = metrics[tc.metric]
                schedule.observe(value)
                if improved(value, state.best_value, tc.mode, tc.min_delta):
                    state.best_value, state.best_step, state.bad_evals = value, state.step, 0
                    checkpoint("best")
                else:
                    state.bad_evals += 1
            checkpoint("last")
            return bool(metrics) and bool(tc.patience) and state.bad_evals >= tc.patience

        # --- the loop
        stop_reason = ""
        last_saved = state.step
        window_items, window_start = 0, time.perf_counter()
        while True:
            if tc.max_steps and state.step >= tc.max_steps:
                stop_reason = stop_reason or f"reached max_steps {tc.max_steps}"
            if tc.max_epochs and state.epoch >= tc.max_epochs:
                stop_reason = stop_reason or f"reached max_epochs {tc.max_epochs}"
            if stop_reason:
                break
            batches = task.train_batches(state.epoch)
            total = _total_steps(tc, len(batches) if hasattr(batches, "__len__") else None)
            for batch in itertools.islice(batches, state.batch, None):  # resuming: skip what was consumed
                batch = batch.shard(dist_info.rank, dist_info.world_size).to(device)
                if not batch.carry:
                    carry = None  # whole sequences (full BPTT): every batch starts from zeros

                # forward from the carried state; backward reaches back to this chunk's start only
                with autocast(device, precision):
                    out = task.compute_loss(ddp, batch, carry)
                out.loss.backward()
                grad_norm = clip_gradients(params, tc.clip_norm, tc.clip_value)  # global norm, before clipping

                # one all-reduce for what is logged: the loss and metrics of the global batch
                keys = sorted(out.metrics)
                loss_value = float(out.loss.detach())
                sums = torch.tensor([batch.num_items, loss_value * batch.num_items, float(math.isfinite(loss_value))]
                                    + [float(out.metrics[k]) * batch.num_items for k in keys], dtype=torch.float64)
                sums = distributed.all_reduce_sum(sums)
                items, loss = int(sums[0]), float(sums[1] / sums[0])
                finite = bool(sums[2] == dist_info.world_size) and bool(torch.isfinite(grad_norm))

                # divergence guard: never step on a NaN/Inf loss or gradient
                lr = schedule.lr(state.step)
                if finite:
                    schedule.apply(optimizer, state.step)
                    optimizer.step()
                    if average is not None:
                        average.update(state.step + 1)
                    state.skips = 0
                else:
                    state.skips += 1
                    what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {float(grad_norm)}"
                    if tc.on_nonfinite == "stop" or state.skips > tc.max_skips:
                        where = (f"the last good checkpoint (step {last_saved}) is {run_dir / 'last'}"
                                 if find_checkpoint(run_dir, prefer=("last",)) else "no checkpoint was saved yet")
                        log.message(f"diverged at step {state.step + 1}: {what}")
                        log.close()
                        raise DivergenceError(
                            f"training diverged at step {state.step + 1} (epoch {state.epoch}): {what}"
                            + (f" ({state.skips} bad batches in a row)" if state.skips > 1 else "")
                            + f"; {where}. Lower optim.lr, set trainer.clip_norm, or set "
                            "trainer.on_nonfinite=skip to skip such batches")
                    log.message(f"step {state.step + 1}: {what}; batch skipped ({state.skips} in a row)")
                optimizer.zero_grad(set_to_none=True)

                # the next chunk continues from this one's final state, cut from its graph
                carry = detach_state(out.state) if batch.carry and finite else None
                state.step += 1
                state.batch += 1
                state.items_seen += items

                now = time.perf_counter()
                window_items += items
                rate = window_items / max(now - window_start, 1e-9)
                if now - window_start > 2.0:
                    window_items, window_start = 0, now
                done = state.step - steps_at_start
                eta = (total - state.step) * (now - fit_start) / done if total else None
                log.train_step({"step": state.step, "epoch": state.epoch, "loss": loss,
                                "grad_norm": float(grad_norm), "lr": lr, "items": items,
                                "items_per_s": rate, "elapsed_s": time_base + now - fit_start,
                                **{k: float(sums[3 + i] / sums[0]) for i, k in enumerate(keys)}},
                               total, eta)

                if tc.eval_every and state.step % tc.eval_every == 0:
                    if evaluate_and_keep_best():
                        stop_reason = f"early stop: {tc.metric} did not improve in {tc.patience} evaluations"
                    last_saved = state.step
                elif tc.checkpoint_every and state.step % tc.checkpoint_every == 0:
                    checkpoint("last")
                    last_saved = state.step
                if stop_reason or (tc.max_steps and state.step >= tc.max_steps):
                    break
            else:
                # epoch end: the streams start over, the schedule may decay, and we evaluate
                state.epoch += 1
                state.batch = 0
                carry = None
                schedule.end_epoch(state.epoch)
                if state.last_eval_step != state.step:
                    if evaluate_and_keep_best():
                        stop_reason = f"early stop: {tc.metric} did not improve in {tc.patience} evaluations"
                else:
                    checkpoint("last")  # the step was evaluated already; record the new epoch
                last_saved = state.step

        # --- the end: evaluate the last steps if that was not done, and keep the last checkpoint
        if state.last_eval_step != state.step:
            evaluate_and_keep_best()
        elif last_saved != state.step:
            checkpoint("last")
        log.message(f"done at step {state.step}: {stop_reason}"
                    + (f"; best {tc.metric} {state.best_value:.4f} at step {state.best_step}"
                       if state.best_value is not None else ""))
        log.close()
        distributed.barrier()
        return TrainResult(run_dir=run_dir, step=state.step, epoch=state.epoch, stop_reason=stop_reason,
                           best_value=state.best_value, best_step=state.best_step, last_valid=dict(last_valid))

    # ------------------------------------------------------------------ helpers

    def _checkpoint_to_resume(self, run_dir: Path) -> Path | None:
        """The checkpoint to continue from, after checking the run directory (on every rank)."""
        if self.resume is not None:
            ckpt = find_checkpoint(self.resume, prefer=("last",))
            if ckpt is None and not (self.resume / "config.yaml").exists():
                raise CheckpointError(f"resume: {self.resume} holds no run (no config.yaml, no checkpoint)")
            return ckpt  # None: the run stopped before its first checkpoint; start it again
        existing = find_checkpoint(run_dir)
        if existing is not None and not self.config.run.overwrite:
            raise CheckpointError(f"run directory {run_dir} already holds a run (checkpoint {existing}); "
                                  f"continue it with resume={run_dir}, or set run.dir to a new directory, "
                                  "or run.overwrite=true to start it afresh")
        return None

    def _write_run_files(self, run_dir: Path, resumed: bool) -> None:
        if self.config.run.overwrite and not resumed:
            import shutil

            for name in RUN_ENTRIES:
                path = run_dir / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.yaml", dump_config(self.config))
        if self.command is not None:
            with open(run_dir / "command.txt", "a") as f:
                f.write(self.command + "\n")
        self.task.save_assets(run_dir)

    def _save(self, target: Path, model, optimizer, schedule, state: TrainState, carry, dist_info,
              training_weights: dict | None = None) -> None:
        """Gather every rank's RNG state and carried state; rank 0 writes the checkpoint."""
        rngs = distributed.gather_to_main(rng_state())
        carries = distributed.gather_to_main(_to_cpu(carry))
        if not dist_info.is_main:
            return
        packed = {}
        for rank, rank_carry in enumerate(carries):
            packed.update(pack_state(rank_carry, f"rank{rank}"))
        trainer_state = {"step": state.step, "task": self.config.task, "world_size": dist_info.world_size,
                         "train": asdict(state), "rng": rngs}
        save_checkpoint(target, config=config_to_dict(self.config), model=model, trainer_state=trainer_state,
                        optimizer=optimizer, scheduler_state=schedule.state_dict(), carry=packed,
                        save_assets=self.task.save_assets, training_weights=training_weights)

    def _restore_rng_and_carry(self, saved: dict, ckpt: Path, dist_info, device) -> Any:
        """Put back this rank's RNG states and carried TBPTT state (exact resume)."""
        rngs = saved.get("rng") or []
        same_world = saved.get("world_size", 1) == dist_info.world_size
        if same_world and dist_info.rank < len(rngs):
            set_rng_state(rngs[dist_info.rank])
        elif rngs:
            set_rng_state(rngs[0])
            torch.manual_seed(self.config.run.seed + saved["train"]["step"] + dist_info.rank)
        if not same_world:
            return None  # the streams are split differently: start them from zeros
        return unpack_state(load_carry(ckpt), f"rank{dist_info.rank}", device)


def _to_cpu(state):
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    return tuple(_to_cpu(s) for s in state)


def _total_steps(tc, steps_per_epoch: int | None) -> int | None:
    """The step the run will end at, when known (for the ETA)."""
    by_epochs = steps_per_epoch * tc.max_epochs if steps_per_epoch and tc.max_epochs else None
    if tc.max_steps and by_epochs:
        return min(tc.max_steps, by_epochs)
    return tc.max_steps or by_epochs
