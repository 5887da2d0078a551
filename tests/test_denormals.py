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


def fused_nodes(outputs):
    """The oneDNN LSTM layer nodes behind `outputs` in the autograd graph."""
    todo, seen, found = [t.grad_fn for t in outputs], set(), []
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if node.name().startswith("MkldnnRnnLayerBackward"):
            found.append(node)
        todo.extend(n for n, _ in node.next_functions)
    return found


def test_torchs_fused_lstm_runs_forward_and_backward_flushed(monkeypatch):
    """Where torch.nn.LSTM's configuration trains on torch's oneDNN kernel (under CPU
    autocast, or without the extension), the call runs flushed, and so does each of its
    backward nodes (one per layer and direction), with the caller's mode back after each."""
    from rnnkit.layers import kernels
    monkeypatch.setattr(kernels, "replaces_fused", lambda *args: False)
    torch.manual_seed(0)
    calls = []
    lstm = torch.lstm
    monkeypatch.setattr(torch, "lstm", lambda *args: calls.append(flushing()) or lstm(*args))
    layer = Recurrent("lstm", 4, 8, num_layers=2, bidirectional=True)
    assert layer.uses_fused
    x = torch.randn(6, 3, 4, requires_grad=True)
    out, state = layer(x)
    assert calls == [True] and not flushing()
    nodes = fused_nodes([out, *state])
    assert len(nodes) == 4  # 2 layers x 2 directions
    inside = []
    for node in nodes:
        node.register_prehook(lambda grads: inside.append(flushing()))  # runs after rnnkit's own
    (out.sum() + state[0].sum() + state[1].sum()).backward()
    assert inside == [True] * 4 and not flushing()
    # the same gradients as torch.nn.LSTM's, which runs unflushed (nothing subnormal here)
    reference = layer.to_torch()
    x2 = x.detach().clone().requires_grad_()
    out2, (h2, c2) = reference(x2)
    (out2.sum() + h2.sum() + c2.sum()).backward()
    torch.testing.assert_close(out, out2)
    torch.testing.assert_close(x.grad, x2.grad)


def test_the_lstm_trains_on_rnnkits_loops_and_answers_with_torchs_kernel(monkeypatch):
    """On CPU the standard LSTM trains on rnnkit's loops (flushed, like every loop) and
    answers with torch's oneDNN kernel (flushed too); under CPU autocast a full-length
    batch trains on torch's kernel (oneDNN's bfloat16), a ragged one still on the loops
    (oneDNN takes no packed input)."""
    if not extension.available():
        pytest.skip(f"C++ extension unavailable here ({extension._state['reason']})")
    calls = []
    lstm = torch.lstm
    monkeypatch.setattr(torch, "lstm", lambda *args: calls.append(flushing()) or lstm(*args))
    layer = Recurrent("lstm", 4, 8, num_layers=2)
    x, lengths = torch.randn(5, 7, 4), torch.tensor([7, 3, 5, 1, 6])
    for given in (lengths, None):
        out, _ = layer(x, None, given)
        assert calls == [] and out.requires_grad  # the loops
        out.sum().backward()
        with torch.no_grad():
            answer, _ = layer(x, None, given)
        assert calls == [True]  # torch's kernel, flushed
        torch.testing.assert_close(answer, out.detach())
        calls.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x, None, lengths)
        assert calls == []
        layer(x)
        assert calls == [True]
