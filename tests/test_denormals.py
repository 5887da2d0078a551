"""Subnormal floats are flushed to zero while the recurrence runs on a CPU, and the
thread's own setting comes back afterwards."""
import pytest
import torch

from rnnkit.layers import Recurrent
from rnnkit.layers.kernels import extension, function
from rnnkit.layers.kernels.denormals import flush_denormals, flushing

SUBNORMAL = 1e-39  # float32's smallest normal is 1.18e-38

pytestmark = pytest.mark.skipif(not torch.set_flush_denormal(False), reason="this CPU has no flush-to-zero mode")


def test_flush_denormals_sets_and_restores_the_threads_mode():
    tiny = torch.tensor([SUBNORMAL])
    assert not flushing() and tiny.mul(1.0).item() != 0
    with flush_denormals():
        assert flushing() and tiny.mul(1.0).item() == 0
        with flush_denormals():  # nested: still on, and still on after the inner block
            assert flushing()
        assert flushing()
        with flush_denormals(False):
            assert not flushing() and tiny.mul(1.0).item() != 0
        assert flushing()
    assert not flushing() and tiny.mul(1.0).item() != 0
    with pytest.raises(RuntimeError), flush_denormals():  # an error inside still restores the mode
        raise RuntimeError
    assert not flushing()


def subnormal_layer(hidden):
    """An Elman ReLU layer whose only path to h_1 is W_hh h_0 with W_hh = 1e-39·I."""
    layer = Recurrent("rnn", 4, hidden, nonlinearity="relu")
    layer.residual = True  # one layer: the loops, not torch's own RNN
    with torch.no_grad():
        for p in layer.parameters():
            p.zero_()
        layer.cells[0].weight_hh.copy_(torch.eye(hidden) * SUBNORMAL)
    return layer


@pytest.mark.parametrize("threads", [1, 2])
def test_the_loops_flush_on_every_thread_and_leave_the_callers_mode(threads, monkeypatch):
    if not extension.available():
        pytest.skip(f"C++ extension unavailable here ({extension._state['reason']})")
    monkeypatch.setattr(function, "_backend", lambda x: extension)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        N, H = 32, 128  # N·H·H multiply-adds a step: enough for a team of two threads
        layer = subnormal_layer(H)
        x = torch.randn(N, 3, 4, requires_grad=True)
        h0 = torch.ones(1, N, H)
        plain = torch.relu(h0[0] @ layer.cells[0].weight_hh.t())  # what IEEE arithmetic gives
        assert (plain > 0).all()
        out, _ = layer(x, (h0,))
        assert (out == 0).all(), f"rows {sorted(set((out != 0).nonzero()[:, 0].tolist()))} kept subnormals"
        assert not flushing()
        (out.sum() + x.sum()).backward()
        assert not flushing()
        with torch.no_grad():
            assert (layer(x, (h0,))[0] == 0).all()
    finally:
        torch.set_num_threads(before)


def test_the_trainer_trains_with_subnormals_flushed(monkeypatch):
    from rnnkit.train.trainer import Trainer
    seen = []
    monkeypatch.setattr(Trainer, "_fit", lambda self: seen.append(flushing()) or "done")
    assert Trainer(config=None, task=None).fit() == "done"
    assert seen == [True] and not flushing()
