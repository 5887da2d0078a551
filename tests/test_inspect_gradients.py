"""Gradient flow over time lag: exact cases, the chain rule by hand, the spectral-radius and
clipping demonstrations, and the `rnnkit gradients` command."""
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.cli import main
from rnnkit.inspect.gradients import (clipping_curves, gradient_by_lag, scaled_elman, spectral_profiles,
                                      spectral_radius)
from rnnkit.layers import Recurrent

ADDING = str(Path(__file__).parent.parent / "configs" / "adding.yaml")
SMALL = ["data.length=20", "data.train_size=64", "data.valid_size=32", "data.test_size=32", "model.hidden_size=8",
         "trainer.eval_every=0"]


def test_additive_cell_passes_the_gradient_unchanged():
    rnn = Recurrent("additive", 3, 3)
    x = torch.randn(4, 12, 3, requires_grad=True)  # the cell has no parameters
    w = torch.tensor([1.0, -2.0, 2.0])
    profile = gradient_by_lag(rnn, lambda m: (m(x)[0][:, -1] @ w).mean())
    np.testing.assert_allclose(profile.norms[0], np.full(12, 3.0 / 4), rtol=1e-6)  # |w| / N at every lag
    assert list(profile.counts) == [4] * 12


def test_elman_profile_equals_the_chain_of_jacobians():
    torch.manual_seed(0)
    rnn = Recurrent("rnn", 2, 5, num_layers=1)
    x = torch.randn(3, 9, 2)
    w = torch.randn(5)
    profile = gradient_by_lag(rnn, lambda m: (m(x)[0][:, -1] @ w).sum())
    with torch.no_grad():
        h, _ = rnn(x)  # (N, L, H)
        W = rnn.cells[0].weight_hh
        g = w.expand(3, 5)  # dL/dh_T
        expected = [g.norm(dim=1).mean()]
        for t in range(8, 0, -1):  # dL/dh_{t-1} = dL/dh_t · diag(1 - h_t²) W_hh
            g = (g * (1 - h[:, t] ** 2)) @ W
            expected.append(g.norm(dim=1).mean())
    np.testing.assert_allclose(profile.norms[0], torch.stack(expected).numpy(), rtol=1e-5)


def test_ragged_lengths_measure_lag_from_each_sequences_own_end():
    rnn = Recurrent("additive", 2, 2, num_layers=2)
    x = torch.randn(3, 6, 2, requires_grad=True)
    lengths = torch.tensor([6, 2, 4])

    def loss_of(m):
        out, _ = m(x, lengths=lengths)
        return out[torch.arange(3), lengths - 1].sum()

    profile = gradient_by_lag(rnn, loss_of, lengths)
    assert list(profile.counts) == [3, 3, 2, 2, 1, 1]
    # top layer h1_T = h1_k + (h0_{k+1} + ... + h0_T): the gradient is the readout, at every lag;
    # the first layer's h0_k reaches h1_T through lag + 1 paths (h0_k, ..., h0_T all hold it)
    np.testing.assert_allclose(profile.norms[1], np.full(6, np.sqrt(2)), rtol=1e-6)
    np.testing.assert_allclose(profile.norms[0], np.sqrt(2) * np.arange(1, 7), rtol=1e-6)


def test_spectral_radius_scales_the_gradient_like_its_power():
    rnn = scaled_elman(16, 4.0)
    assert spectral_radius(rnn.cells[0].weight_hh) == pytest.approx(4.0, rel=1e-6)
    small, large = spectral_profiles([0.25, 4.0], ("tanh", "relu"), hidden_size=16, length=20, batch=8)[2:]
    # relu: the active units see W_hh itself, so the norm moves by at most ρ per step, and in
    # practice close to it
    assert small.ratio(lags=(0, 19)) < 0.25 ** 19
    assert large.ratio(lags=(0, 19)) > 1.5 ** 19
    tanh_small = spectral_profiles([0.25], ("tanh",), hidden_size=16, length=20, batch=8)[0]
    assert tanh_small.ratio(lags=(0, 19)) < 0.25 ** 19


def test_clipping_keeps_an_exploding_elman_rnn_training():
    curves = clipping_curves((0.0, 1.0), steps=30, hidden_size=32)
    # without clipping the loss explodes (it overflows a few steps later); with it, it stays put
    assert np.isnan(curves[0.0]).any() or np.nanmax(curves[0.0]) > 1e20
    assert np.isfinite(curves[1.0]).all() and curves[1.0].max() < 5
    assert curves[1.0][-5:].mean() < curves[1.0][:5].mean()


def test_gradients_command_compares_cells_and_reads_runs(tmp_path, capsys):
    plot = tmp_path / "cells.png"
    assert main(["gradients", ADDING, *SMALL, "--compare", "rnn,irnn,gru,lstm", "--batch", "8",
                 "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "lag 0:" in line]
    assert [r.split("lag 0:")[0].strip() for r in rows] == ["Elman tanh", "IRNN (ReLU, W_hh = I)", "GRU",
                                                           "LSTM (chrono 100)"]
    assert "lag 19 / lag 0" in rows[0] and f"wrote {plot}" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"

    run_dir = tmp_path / "run"
    assert main(["train", ADDING, *SMALL, "model.num_layers=2", "model.chrono=0", "trainer.max_steps=2",
                 f"run.dir={run_dir}", "run.tensorboard=false"]) == 0
    capsys.readouterr()
    assert main(["gradients", str(run_dir), "--batch", "4", "--plot", str(tmp_path / "run.png")]) == 0
    out = capsys.readouterr().out
    assert "layer 0" in out and "layer 1" in out and (tmp_path / "run.png").exists()


def test_gradients_command_errors(tmp_path, capsys):
    cases = [([], "give a run directory or a recipe"),
             (["--spectral", "4,x"], "expected numbers"),
             (["--spectral", "4,0"], "must be > 0"),
             ([str(tmp_path)], "no checkpoint"),
             ([str(tmp_path / "nope.yaml")], "no such run directory or recipe"),
             ([ADDING, "model.hiden_size=3"], "unknown key"),
             ([ADDING, "--batch", "0"], "--batch must be >= 1")]
    for extra, message in cases:
        assert main(["gradients", *extra, "--plot", str(tmp_path / "x.png")]) != 0
        assert message in capsys.readouterr().err, extra
