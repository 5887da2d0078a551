"""rnnkit.inspect.record: the recorded values are the ones the model computed."""
import pytest
import torch
from torch import nn

from rnnkit.inspect import record
from rnnkit.layers import Recurrent
from rnnkit.models import LanguageModel

CELLS = ["lstm", "gru", "rnn"]


def _layer(cell, bidirectional, num_layers=2, seed=0):
    torch.manual_seed(seed)
    return Recurrent(cell, 3, 5, num_layers=num_layers, bidirectional=bidirectional)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("ragged", [False, True])
def test_recorded_states_are_the_outputs_and_final_state(cell, bidirectional, ragged):
    layer = _layer(cell, bidirectional)
    x = torch.randn(3, 7, 3)
    lengths = torch.tensor([7, 4, 5]) if ragged else None
    out_fast, state_fast = layer(x, lengths=lengths)  # whatever path runs unrecorded
    with record(layer) as rec:
        out, state = layer(x, lengths=lengths)
    trace = rec.trace()
    dirs = 2 if bidirectional else 1
    assert trace["h"].shape == (2, dirs, 3, 7, 5)
    # the last layer's recorded h, directions side by side, is exactly the output
    top = torch.cat([trace.get("h", 1, d) for d in range(dirs)], dim=-1)
    assert torch.equal(top, out)
    # every layer's final state: the forward direction's last real step, the backward's step 0
    last = (lengths if ragged else torch.full((3,), 7)) - 1
    rows = torch.arange(3)
    for name_index, kind in enumerate(layer.state_names):
        for layer_index in range(2):
            for d in range(dirs):
                seq = trace.get(kind, layer_index, d)  # (N, L, H)
                at = seq[rows, last] if d == 0 else seq[:, 0]
                assert torch.equal(at, state[name_index][layer_index * dirs + d]), (kind, layer_index, d)
    # and the recorded pass computes what the unrecorded (fast) path computes
    torch.testing.assert_close(out, out_fast, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state[0], state_fast[0], atol=1e-5, rtol=1e-5)
    if ragged:  # padded steps are recorded as zeros, as Recurrent outputs them
        assert torch.all(trace["h"][:, :, 1, 4:] == 0) and torch.all(trace["h"][:, :, 1, :4] != 0)
        assert torch.equal(trace.lengths, lengths)


def test_lstm_gates_are_the_ones_used():
    layer = _layer("lstm", False, num_layers=1)
    x = torch.randn(2, 9, 3)
    with record(layer) as rec:
        layer(x)
    t = rec.trace()
    assert set(t.kinds) == {"h", "c", "i", "f", "g", "o"}
    i, f, g, o, c, h = (t.get(k, 0) for k in "ifgoch")
    c_prev = torch.cat([torch.zeros_like(c[:, :1]), c[:, :-1]], dim=1)
    torch.testing.assert_close(c, f * c_prev + i * g)
    torch.testing.assert_close(h, o * torch.tanh(c))
    assert torch.all((i > 0) & (i < 1)) and torch.all(g.abs() < 1)


def test_gru_gates_are_the_ones_used():
    layer = _layer("gru", False, num_layers=1)
    x = torch.randn(2, 9, 3)
    with record(layer) as rec:
        layer(x)
    t = rec.trace()
    assert set(t.kinds) == {"h", "r", "z", "n"}
    h, z, n = t.get("h", 0), t.get("z", 0), t.get("n", 0)
    h_prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)
    torch.testing.assert_close(h, (1 - z) * n + z * h_prev)


def test_chunks_join_along_time_and_kinds_filter():
    layer = _layer("lstm", False)
    x = torch.randn(2, 10, 3)
    with record(layer, kinds=("c",)) as whole:
        layer(x)
    with record(layer, kinds=("c",)) as parts:
        _, state = layer(x[:, :4])
        layer(x[:, 4:], state)
    a, b = whole.trace(), parts.trace()
    assert a.kinds == ("c",) == b.kinds
    assert b["c"].shape == (2, 1, 2, 10, 5)
    torch.testing.assert_close(a["c"], b["c"])


def test_recording_ends_with_the_block_and_unrecorded_runs_take_the_fused_path(monkeypatch):
    layer = _layer("lstm", False)
    x = torch.randn(2, 5, 3)
    with record(layer):
        assert layer.recorder is not None and layer.cells[0].gate_observer is not None
        layer(x)
    assert layer.recorder is None and all(c.gate_observer is None for c in layer.cells)
    assert "recorder" not in vars(layer)

    def no_loop(*args, **kwargs):
        raise AssertionError("the loop path ran without recording")

    monkeypatch.setattr(Recurrent, "_forward_loop", no_loop)
    with torch.no_grad():
        layer(x)  # inference: torch.nn.LSTM's fused kernel, as before any recording
        with pytest.raises(AssertionError, match="loop path"):
            with record(layer):
                layer(x)


def test_model_names_and_gradients_through_recorded_tensors():
    torch.manual_seed(0)
    model = LanguageModel(11, "lstm", hidden_size=6, num_layers=2)
    tokens = torch.randint(0, 11, (2, 8))
    with record(model, detach=False) as rec:
        logits, _ = model(tokens)
    assert rec.names == ["rnn"]
    steps = rec.step_tensors("h")[1]  # the top layer, one (N, H) tensor per step
    assert len(steps) == 8 and steps[3].requires_grad
    loss = nn.functional.cross_entropy(logits[:, -1], torch.tensor([1, 2]))
    grads = torch.autograd.grad(loss, steps)
    assert grads[-1].abs().sum() > 0 and grads[0].abs().sum() > 0
    # dL/dh_T of the top layer is the output layer's weight times dL/dlogits, exactly
    p = logits[:, -1].softmax(-1).detach()
    p[torch.arange(2), torch.tensor([1, 2])] -= 1
    torch.testing.assert_close(grads[-1], p @ model.head.weight.detach() / 2)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="contains no rnnkit Recurrent"):
        with record(nn.Linear(2, 2)):
            pass
    layer = _layer("rnn", False)
    with record(layer) as rec:
        pass
    with pytest.raises(RuntimeError, match="no forward pass"):
        rec.trace()
    with record(layer) as rec:
        layer(torch.randn(1, 3, 3))
    with pytest.raises(KeyError, match="nothing recorded for 'c'"):
        rec.trace()["c"]
    with pytest.raises(KeyError, match="no Recurrent called 'x'"):
        rec.trace("x")
    with record(_layer("gru", False), kinds=("c",)) as rec:
        rec.module()(torch.randn(1, 3, 3))
    with pytest.raises(ValueError, match="kinds \\['c'\\] are none of this cell's h, r, z, n"):
        rec.trace()
