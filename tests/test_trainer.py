"""The training loop: truncated BPTT, clipping, schedules, evaluation, early stopping,
divergence guard, determinism, in-process exact resume."""
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from toytask import ToyTask, losses, make_config, one_thread_fixture, train  # noqa: E402

from rnnkit.config import OptimConfig, ScheduleConfig  # noqa: E402
from rnnkit.layers import Recurrent  # noqa: E402
from rnnkit.train import (CheckpointError, DivergenceError, Schedule, StreamBatches, build_optimizer,  # noqa: E402
                          clip_gradients, detach_state, find_checkpoint, run_with_resets)
from rnnkit.train.checkpoint import read_state  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

_one_thread = one_thread_fixture()


# ----------------------------------------------------------------------------- truncated BPTT


@pytest.mark.parametrize("cell, options", [("lstm", {}), ("gru", {}), ("lstm", {"variant": "peephole"})])
def test_chunked_run_equals_unchunked_forward(cell, options):
    torch.manual_seed(0)
    layer = Recurrent(cell, 5, 7, num_layers=2, **options)
    x = torch.randn(3, 60, 5)  # (N, L, D)
    full, full_state = layer(x)
    outs, state = [], None
    for k in range(3):
        out, state = layer(x[:, 20 * k:20 * (k + 1)], state)
        outs.append(out)
        state = detach_state(state)
    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=1e-5, atol=1e-6)
    for a, b in zip(state, full_state):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_gradient_of_chunk_k_does_not_reach_chunk_k_minus_1():
    torch.manual_seed(0)
    layer = Recurrent("lstm", 4, 6)
    x = torch.randn(2, 40, 4, requires_grad=True)
    _, state = layer(x[:, :20])
    out, _ = layer(x[:, 20:], detach_state(state))
    out.sum().backward()
    assert torch.all(x.grad[:, :20] == 0)  # nothing flows back past the boundary
    assert torch.all(x.grad[:, 20:].abs().sum(-1) > 0)
    # without the detach the first chunk does receive gradient (the check above is meaningful)
    x.grad = None
    _, state = layer(x[:, :20])
    out, _ = layer(x[:, 20:], state)
    out.sum().backward()
    assert x.grad[:, :20].abs().sum() > 0


def test_resets_start_each_document_from_zero():
    torch.manual_seed(0)
    layer = Recurrent("lstm", 3, 5)
    x = torch.randn(2, 12, 3)
    carried = tuple(torch.randn(1, 2, 5) for _ in range(2))
    reset = torch.zeros(2, 12, dtype=torch.bool)
    reset[0, 7] = True   # stream 0: a new document at step 7
    reset[1, 0] = True   # stream 1: a new document right at the chunk start
    out, state = run_with_resets(layer, x, carried, reset)
    first0, _ = layer(x[:1, :7], tuple(s[:, :1] for s in carried))
    second0, st0 = layer(x[:1, 7:])
    torch.testing.assert_close(out[:1], torch.cat([first0, second0], 1))
    whole1, st1 = layer(x[1:])  # from zeros, the carried state is dropped
    torch.testing.assert_close(out[1:], whole1)
    torch.testing.assert_close(state[0], torch.cat([st0[0], st1[0]], 1))
    no_reset, _ = run_with_resets(layer, x, carried, torch.zeros_like(reset))
    torch.testing.assert_close(no_reset, layer(x, carried)[0])


def test_stream_batches_layout():
    tokens = torch.arange(42)
    starts = tokens % 10 == 0
    batches = StreamBatches(tokens, batch_size=4, bptt=3, starts=starts)
    assert len(batches) == 4  # 10 steps per stream: chunks of 3, 3, 3, 1
    b0, b3 = batches[0], batches[3]
    assert b0.inputs.tolist()[1] == [10, 11, 12] and b0.targets.tolist()[1] == [11, 12, 13]
    assert b3.inputs.shape == (4, 1) and b0.carry and b0.size == 12
    assert b0.reset[:, 0].tolist() == [True, True, True, True]  # 0, 10, 20, 30 start documents
    assert not b0.reset[:, 1:].any()
    assert [b.inputs[0, 0].item() for b in batches] == [0, 3, 6, 9]


# ----------------------------------------------------------------------------- clipping


def test_global_norm_clipping_keeps_direction():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    norm = clip_gradients([a, b], clip_norm=1.0)
    assert float(norm) == pytest.approx(5.0)  # the norm before clipping
    assert a.grad.tolist() == pytest.approx([0.6, 0.0]) and b.grad.tolist() == pytest.approx([0.8])
    a.grad, b.grad = torch.tensor([0.3, 0.0]), torch.tensor([0.4])
    clip_gradients([a, b], clip_norm=1.0)  # below the threshold: unchanged
    assert a.grad.tolist() == pytest.approx([0.3, 0.0])


def test_value_clipping_then_norm():
    a = torch.nn.Parameter(torch.zeros(3))
    a.grad = torch.tensor([5.0, -0.5, -9.0])
    norm = clip_gradients([a], clip_value=1.0)
    assert float(norm) == pytest.approx(math.sqrt(25 + 0.25 + 81))
    assert a.grad.tolist() == [1.0, -0.5, -1.0]
    a.grad = torch.tensor([float("nan"), 1.0, 1.0])
    assert not torch.isfinite(clip_gradients([a], clip_norm=1.0))


def test_trainer_logs_preclip_norm_and_steps_by_clipped_gradient(tmp_path):
    clip = 1e-3
    cfg = make_config(tmp_path / "run", "optim.name=sgd", "optim.lr=1.0", f"trainer.clip_norm={clip}",
                      "trainer.max_steps=1")
    torch.manual_seed(0)
    before = ToyTask(cfg)
    before.prepare_data()
    theta0 = before.build_model().state_dict()
    train(cfg)
    [grad_norm] = losses(tmp_path / "run", "grad_norm")
    assert grad_norm > 100 * clip  # logged before clipping
    theta1 = load_file(str(tmp_path / "run" / "last" / "model.safetensors"))
    step = torch.sqrt(sum(((theta1[k] - theta0[k]) ** 2).sum() for k in theta0))
    assert float(step) == pytest.approx(clip, rel=1e-4)  # SGD with lr 1 moves by exactly the clipped norm


# ----------------------------------------------------------------------------- optimisers and schedules


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                       ("adamw", torch.optim.AdamW), ("rmsprop", torch.optim.RMSprop),
                                       ("adadelta", torch.optim.Adadelta), ("adagrad", torch.optim.Adagrad)])
def test_optimisers_minimise_a_quadratic(name, cls):
    w = torch.nn.Parameter(torch.tensor([2.0, -3.0]))
    opt = build_optimizer(OptimConfig(name=name, lr=1.0 if name == "adadelta" else 0.05), [w])
    assert isinstance(opt, cls)
    start = float((w ** 2).sum().detach())
    for _ in range(20):
        opt.zero_grad()
        (w ** 2).sum().backward()
        opt.step()
    assert float((w ** 2).sum().detach()) < start


def test_sgd_nesterov_options_reach_torch():
    opt = build_optimizer(OptimConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True),
                          [torch.nn.Parameter(torch.zeros(1))])
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9


def test_schedule_shapes():
    s = Schedule(ScheduleConfig(name="constant", warmup_steps=4), 1.0)
    assert [s.lr(i) for i in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]

    s = Schedule(ScheduleConfig(name="step", decay_after=2, decay_every=1, gamma=0.5), 1.0)
    lrs = []
    for epoch in range(5):
        lrs.append(s.lr(0))
        s.end_epoch(epoch + 1)
    assert lrs == [1.0, 1.0, 0.5, 0.25, 0.125]  # char-rnn: decay from the end of epoch 2 on

    s = Schedule(ScheduleConfig(name="cosine", min_lr=0.1, warmup_steps=10), 1.0, max_steps=110)
    assert s.lr(0) == pytest.approx(0.1) and s.lr(9) == pytest.approx(1.0)
    assert s.lr(60) == pytest.approx(0.55) and s.lr(110) == pytest.approx(0.1) and s.lr(500) == pytest.approx(0.1)

    s = Schedule(ScheduleConfig(name="plateau", patience=1, gamma=0.1, min_lr=0.005), 1.0)
    # patience 1: the second evaluation in a row without beating the best (4.0) decays; floor min_lr
    for value, lr in [(5.0, 1.0), (4.0, 1.0), (4.5, 1.0), (4.5, 0.1), (4.4, 0.1), (4.5, 0.01),
                      (4.5, 0.01), (4.5, 0.005)]:
        s.observe(value)
        assert s.lr(0) == pytest.approx(lr), (value, lr)
    restored = Schedule(ScheduleConfig(name="plateau", patience=1, gamma=0.1, min_lr=0.005), 1.0)
    restored.load_state_dict(s.state_dict())
    assert restored.state_dict() == s.state_dict() and restored.lr(0) == s.lr(0)


def test_trainer_applies_warmup_and_step_decay(tmp_path):
    cfg = make_config(tmp_path / "run", "schedule.name=step", "schedule.decay_after=1", "schedule.gamma=0.5",
                      "schedule.warmup_steps=4", "trainer.max_epochs=2", "data.num_tokens=400")
    train(cfg)
    lrs = losses(tmp_path / "run", "lr")
    per_epoch = len(lrs) // 2
    assert lrs[:4] == pytest.approx([0.0025, 0.005, 0.0075, 0.01])
    assert lrs[per_epoch - 1] == pytest.approx(0.01) and lrs[per_epoch] == pytest.approx(0.005)


# ----------------------------------------------------------------------------- the loop


def test_evaluates_every_n_steps_and_at_epoch_end_keeping_best_and_last(tmp_path):
    result, progress = train(make_config(tmp_path / "run", "trainer.eval_every=7"))
    run = tmp_path / "run"
    steps = losses(run, "step", "valid.csv")
    assert steps == [7, 14, 21, 28, 30]  # 30 chunks in the epoch
    valid = losses(run, "loss", "valid.csv")
    assert read_state(run / "last")["train"]["step"] == 30
    best_step = read_state(run / "best")["train"]["step"]
    assert best_step == steps[valid.index(min(valid))] == result.best_step
    assert valid[-1] < valid[0]  # it learns
    assert set(losses(run, "step")) == set(range(1, 31))
    assert "ppl" in result.last_valid and "valid step 7" in progress
    for name in ("config.yaml", "vocab.json", "train.csv", "valid.csv", "train.log"):
        assert (run / name).exists(), name
    for name in ("config.yaml", "vocab.json", "model.safetensors", "optimizer.pt", "scheduler.pt",
                 "trainer_state.json"):
        assert (run / "last" / name).exists(), name


def test_early_stopping(tmp_path):
    cfg = make_config(tmp_path / "run", "optim.lr=1e-9", "trainer.eval_every=3", "trainer.patience=2",
                      "trainer.min_delta=0.01", "trainer.max_epochs=5")
    result, _ = train(cfg)
    assert result.stop_reason.startswith("early stop") and result.step == 9  # 1 best + 2 bad evaluations
    assert read_state(tmp_path / "run" / "best")["train"]["step"] == 3


def test_metric_max_mode_and_unknown_metric(tmp_path):
    result, _ = train(make_config(tmp_path / "a", "trainer.metric=acc", "trainer.mode=max", "trainer.eval_every=10"))
    accs = losses(tmp_path / "a", "acc", "valid.csv")
    assert result.best_value == max(accs)
    with pytest.raises(Exception, match="trainer.metric = 'bleu'.*loss, acc, ppl"):
        train(make_config(tmp_path / "b", "trainer.metric=bleu", "trainer.max_steps=2", "trainer.eval_every=1"))


def test_full_bptt_batches_start_from_zero_state(tmp_path):
    seen = []

    class Spy(ToyTask):
        def compute_loss(self, model, batch, state):
            seen.append((batch.carry, state))
            return super().compute_loss(model, batch, state)

    cfg = make_config(tmp_path / "run", "trainer.bptt=0", "data.doc_length=20", "trainer.max_steps=5")
    from rnnkit.train import Trainer
    import io

    Trainer(cfg, Spy(cfg), stream=io.StringIO()).fit()
    assert seen and all(carry is False and state is None for carry, state in seen)


def test_streamed_batches_carry_detached_state(tmp_path):
    seen = []

    class Spy(ToyTask):
        def compute_loss(self, model, batch, state):
            if model.training:
                seen.append(state)
            return super().compute_loss(model, batch, state)

    cfg = make_config(tmp_path / "run", "trainer.max_steps=4")
    from rnnkit.train import Trainer
    import io

    Trainer(cfg, Spy(cfg), stream=io.StringIO()).fit()
    assert seen[0] is None
    assert all(s is not None and all(not t.requires_grad and t.grad_fn is None for t in s) for s in seen[1:])


def test_deterministic_bit_for_bit(tmp_path):
    opts = ["model.dropout=0.3", "model.num_layers=2", "trainer.max_steps=12", "trainer.eval_every=6"]
    train(make_config(tmp_path / "a", *opts))
    train(make_config(tmp_path / "b", *opts))
    train(make_config(tmp_path / "c", *opts, "run.seed=1"))
    assert losses(tmp_path / "a") == losses(tmp_path / "b")  # exact float equality
    assert losses(tmp_path / "a", "grad_norm") == losses(tmp_path / "b", "grad_norm")
    assert losses(tmp_path / "a", "loss", "valid.csv") == losses(tmp_path / "b", "loss", "valid.csv")
    wa = load_file(str(tmp_path / "a" / "last" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "last" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert losses(tmp_path / "a") != losses(tmp_path / "c")


@pytest.mark.parametrize("bptt, extra", [(10, ["model.dropout=0.2"]), (0, ["data.doc_length=12"])])
def test_resume_in_process_continues_exactly(tmp_path, bptt, extra):
    opts = [f"trainer.bptt={bptt}", "trainer.max_epochs=2", "trainer.checkpoint_every=4", "data.num_tokens=600",
            *extra]
    full, _ = train(make_config(tmp_path / "full", *opts))
    train(make_config(tmp_path / "part", *opts, "trainer.max_steps=13"))  # stops mid-epoch 0
    resumed, _ = train(make_config(tmp_path / "part", *opts), resume=tmp_path / "part")
    assert resumed.step == full.step
    assert losses(tmp_path / "part") == losses(tmp_path / "full")
    assert losses(tmp_path / "part", "step") == losses(tmp_path / "full", "step")


def test_divergence_stops_naming_step_and_keeps_last_good_checkpoint(tmp_path):
    cfg = make_config(tmp_path / "run", "data.nan_at=[7]", "trainer.checkpoint_every=5")
    with pytest.raises(DivergenceError, match=r"diverged at step 7 .*loss nan.*last good checkpoint \(step 5\)"):
        train(cfg)
    ckpt = find_checkpoint(tmp_path / "run")
    assert read_state(ckpt)["train"]["step"] == 5
    weights = load_file(str(ckpt / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_divergence_skip_mode(tmp_path):
    result, progress = train(make_config(tmp_path / "a", "data.nan_at=[3]", "trainer.on_nonfinite=skip",
                                         "trainer.max_steps=6"))
    values = losses(tmp_path / "a")
    assert math.isnan(values[2]) and all(math.isfinite(v) for i, v in enumerate(values) if i != 2)
    assert "batch skipped" in progress and result.step == 6
    with pytest.raises(DivergenceError, match="3 bad batches in a row"):
        train(make_config(tmp_path / "b", "data.nan_at=[2, 3, 4]", "trainer.on_nonfinite=skip",
                          "trainer.max_skips=2", "trainer.max_steps=6"))


def test_existing_run_dir_is_refused_unless_overwrite(tmp_path):
    train(make_config(tmp_path / "run", "trainer.max_steps=2"))
    with pytest.raises(CheckpointError, match="already holds a run.*resume="):
        train(make_config(tmp_path / "run", "trainer.max_steps=2"))
    train(make_config(tmp_path / "run", "trainer.max_steps=3", "run.overwrite=true"))
    assert losses(tmp_path / "run", "step") == [1, 2, 3]


def test_bf16_autocast_on_cpu(tmp_path):
    result, _ = train(make_config(tmp_path / "run", "trainer.precision=bf16", "trainer.max_steps=3",
                                  "trainer.eval_every=3"))
    assert all(math.isfinite(v) for v in losses(tmp_path / "run"))


def test_tensorboard_is_optional(tmp_path):
    train(make_config(tmp_path / "run", "trainer.max_steps=2"))
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        assert not (tmp_path / "run" / "tb").exists()  # and the run went fine without it
    else:
        assert any((tmp_path / "run" / "tb").iterdir())


# ----------------------------------------------------------------------------- devices and logs


def test_device_resolver_and_precision():
    from rnnkit.train.device import resolve_device, resolve_precision

    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="run.device = 'cuda': CUDA is not available"):
            resolve_device("cuda")
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"


@pytest.mark.parametrize("amx,expected", [(True, "bf16"), (False, "fp32"), (None, "fp32"), ("raises", "fp32")])
def test_auto_precision_on_cpu_is_bf16_only_with_matrix_units(monkeypatch, amx, expected):
    from rnnkit.train.device import resolve_precision

    if amx is None:
        monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    else:
        def probe():
            if amx == "raises":
                raise RuntimeError("no cpuinfo")
            return amx
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", probe, raising=False)
    assert resolve_precision("auto", torch.device("cpu")) == expected


def test_progress_is_live_on_a_terminal_and_plain_elsewhere():
    import io

    from rnnkit.train.logging import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    live, plain = Terminal(), io.StringIO()
    for stream in (live, plain):
        progress = Progress(stream, log_every=5)
        for step in range(1, 11):
            progress.update(step, 10, 0, 1.0, 1234.0, 0.5, 1e-3, 3.0)
            if stream is live:
                progress.last_draw = 0.0  # no 10 Hz throttling in the test
        progress.message("valid ...")
    assert "\r" in live.getvalue() and "step 10/10" in live.getvalue() and "eta 0:03" in live.getvalue()
    lines = plain.getvalue().splitlines()
    assert "\r" not in plain.getvalue()
    assert [line.split()[1] for line in lines[:-1]] == ["1/10", "5/10", "10/10"]
    assert "1,234 tok/s" in lines[0] and "|g| 0.5" in lines[0]


def test_csv_truncation_drops_later_and_cut_rows(tmp_path):
    from rnnkit.train.logging import CsvLog, read_csv

    log = CsvLog(tmp_path / "t.csv")
    for step in range(1, 6):
        log.write({"step": step, "loss": step / 3})
    log.close()
    with open(tmp_path / "t.csv", "a") as f:
        f.write("6,0.5")  # a row cut short by a kill
    CsvLog(tmp_path / "t.csv").truncate_after(3)
    rows = read_csv(tmp_path / "t.csv")
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[0]["loss"] == 1 / 3  # floats read back exactly


# ----------------------------------------------------------------------------- weight averaging


def test_weight_average_follows_the_formula_and_swaps_in_and_out():
    from rnnkit.train.averaging import WeightAverage

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.9, start=2)
    expected = {k: v.clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    for step in range(1, 8):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(4, 3))  # moves the running statistics (buffers are averaged too)
        average.update(step)
        k = step - 2
        d = 0.0 if k <= 0 else min(0.9, (1 + k) / (10 + k))
        for name, t in model.state_dict().items():
            if name in expected:
                expected[name] = d * expected[name] + (1 - d) * t
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    with average.swapped() as kept:
        for name, want in expected.items():
            torch.testing.assert_close(model.state_dict()[name], want)
            torch.testing.assert_close(kept[name], trained[name])
    for name, t in model.state_dict().items():
        assert torch.equal(t, trained[name])  # the trained weights are back
    assert model.state_dict()["1.num_batches_tracked"].dtype == torch.long  # integers are left alone


def test_weight_averaging_saves_the_average_and_resumes_exactly(tmp_path):
    opts = ["trainer.max_epochs=2", "trainer.checkpoint_every=4", "data.num_tokens=600", "model.dropout=0.2",
            "trainer.ema_decay=0.8", "trainer.ema_start=3"]
    full, progress = train(make_config(tmp_path / "full", *opts))
    assert "weights averaged (decay 0.8 from step 3)" in progress
    train(make_config(tmp_path / "part", *opts, "trainer.max_steps=13"))
    train(make_config(tmp_path / "part", *opts), resume=tmp_path / "part")
    assert losses(tmp_path / "part") == losses(tmp_path / "full")
    # the final evaluation (of the average) is the same; the stopped part also evaluated at its step 13
    assert losses(tmp_path / "part", "loss", "valid.csv")[-1] == losses(tmp_path / "full", "loss", "valid.csv")[-1]
    for name in ("model", "training_weights"):
        a = load_file(str(tmp_path / "full" / "last" / f"{name}.safetensors"))
        b = load_file(str(tmp_path / "part" / "last" / f"{name}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a)
    average = load_file(str(tmp_path / "full" / "last" / "model.safetensors"))
    trained = load_file(str(tmp_path / "full" / "last" / "training_weights.safetensors"))
    assert set(average) == set(trained) and any(not torch.equal(average[k], trained[k]) for k in average)
    # the same run without averaging trains the same weights: averaging changes only what is saved
    train(make_config(tmp_path / "plain", *opts[:4]))
    plain = load_file(str(tmp_path / "plain" / "last" / "model.safetensors"))
    assert all(torch.equal(plain[k], trained[k]) for k in plain)
    assert losses(tmp_path / "plain") == losses(tmp_path / "full")
    assert losses(tmp_path / "plain", "loss", "valid.csv") != losses(tmp_path / "full", "loss", "valid.csv")
    # an average that has not started yet is the weights themselves
    train(make_config(tmp_path / "late", *opts[:4], "trainer.ema_decay=0.8", "trainer.ema_start=1000"))
    late = load_file(str(tmp_path / "late" / "last" / "model.safetensors"))
    assert all(torch.equal(late[k], plain[k]) for k in plain)
