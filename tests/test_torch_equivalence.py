"""Torch-equivalent configurations against torch.nn.LSTM / GRU / RNN.

Weights go both ways (`Recurrent.from_torch(module)` and `layer.to_torch()`); outputs,
final states and gradients (input, initial state, every parameter) must equal torch's
for every combination of num_layers ∈ {1, 2}, bidirectional, batch_first, with and
without lengths. With lengths, torch gets a PackedSequence, and the ragged batch is
also compared with running each sequence alone. `uses_fused` says which
configurations run torch's fused kernel.
"""
import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit.layers import Recurrent

N, L, D, H = 4, 6, 3, 5
LENGTHS = torch.tensor([6, 2, 5, 1])  # unsorted, one full length, one of length 1
ATOL, RTOL = 1e-5, 1e-5

# id: (torch module class, torch keyword arguments, Recurrent cell options)
TORCH_KINDS = {
    "lstm": (nn.LSTM, {}, {"cell": "lstm"}),
    "lstm-np": (nn.LSTM, {}, {"cell": "lstm", "variant": "np"}),
    "gru": (nn.GRU, {}, {"cell": "gru", "variant": "standard"}),
    "rnn-tanh": (nn.RNN, {"nonlinearity": "tanh"}, {"cell": "rnn", "nonlinearity": "tanh"}),
    "rnn-relu": (nn.RNN, {"nonlinearity": "relu"}, {"cell": "rnn", "nonlinearity": "relu"}),
}
COMBINATIONS = list(itertools.product([1, 2], [False, True], [False, True], [False, True]))
COMBINATION_IDS = [f"layers{n}-{'bi' if b else 'uni'}-{'bf' if f else 'tf'}-{'lengths' if w else 'dense'}"
                   for n, b, f, w in COMBINATIONS]


def torch_parameter_pairs(layer, module):
    """(name, our parameter, torch's parameter) for every weight, torch's naming."""
    dirs = 2 if module.bidirectional else 1
    pairs = []
    for layer_index in range(module.num_layers):
        for direction in range(dirs):
            suffix = f"_l{layer_index}" + ("_reverse" if direction else "")
            cell = layer.cells[layer_index * dirs + direction]
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                pairs.append((name + suffix, getattr(cell, name), getattr(module, name + suffix)))
    return pairs


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def run_torch(module, x, state, lengths, batch_first):
    """torch's outputs (x's layout, zero at padded steps) and state tuple; a
    PackedSequence when there are lengths."""
    if isinstance(module, nn.LSTM):
        torch_state = state
    else:
        torch_state = None if state is None else state[0]
    if lengths is None:
        out, final = module(x, torch_state)
    else:
        packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
        out, final = module(packed, torch_state)
        out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=L)
    return out, as_tuple(final)


def run_torch_one_by_one(module, x, state, lengths, batch_first):
    """torch on each sequence alone, cut to its length, padded back with zeros."""
    xb = x if batch_first else x.transpose(0, 1)
    outputs, finals = [], []
    for n in range(N):
        steps = int(lengths[n])
        seq = xb[n:n + 1, :steps]
        seq_state = None if state is None else tuple(s[:, n:n + 1] for s in state)
        out, final = run_torch(module, seq if batch_first else seq.transpose(0, 1), seq_state, None, batch_first)
        out = out if batch_first else out.transpose(0, 1)
        outputs.append(torch.cat([out, out.new_zeros(1, L - steps, out.shape[-1])], dim=1))
        finals.append(final)
    out = torch.cat(outputs, dim=0)
    final = tuple(torch.cat([f[e] for f in finals], dim=1) for e in range(len(finals[0])))
    return (out if batch_first else out.transpose(0, 1)), final


def loss_of(out, state, seed=5):
    generator = torch.Generator().manual_seed(seed)
    total = 0
    for t in (out, *state):
        total = total + (t * torch.randn(t.shape, generator=generator)).sum()
    return total


def compare(layer, module, with_lengths, batch_first, given_state):
    """Our forward vs torch's, outputs, states and gradients; with lengths also vs
    torch on each sequence alone."""
    dirs = 2 if module.bidirectional else 1
    generator = torch.Generator().manual_seed(1)
    shape = (N, L, D) if batch_first else (L, N, D)
    x = torch.randn(shape, generator=generator)
    n_state = 2 if isinstance(module, nn.LSTM) else 1
    state = None
    if given_state:
        state = tuple(0.5 * torch.randn(module.num_layers * dirs, N, H, generator=generator)
                      for _ in range(n_state))
    lengths = LENGTHS if with_lengths else None
    pairs = torch_parameter_pairs(layer, module)

    def forward_and_grads(run, params):
        xs = x.clone().requires_grad_()
        states = None if state is None else tuple(s.clone().requires_grad_() for s in state)
        out, final = run(xs, states)
        leaves = [xs, *(states or ()), *params]
        return out, final, torch.autograd.grad(loss_of(out, final), leaves)

    def ours(xs, states):
        return layer(xs, states, lengths=lengths) if with_lengths else layer(xs, states)

    out, final, grads = forward_and_grads(ours, [p for _, p, _ in pairs])
    t_out, t_final, t_grads = forward_and_grads(
        lambda xs, states: run_torch(module, xs, states, lengths, batch_first), [p for _, _, p in pairs])

    assert out.shape == ((N, L, dirs * H) if batch_first else (L, N, dirs * H))
    torch.testing.assert_close(out, t_out, atol=ATOL, rtol=RTOL)
    assert isinstance(final, tuple) and len(final) == len(t_final)
    for got, want in zip(final, t_final):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL)
    names = ["x", *[f"state[{i}]" for i in range(n_state if given_state else 0)], *[n for n, _, _ in pairs]]
    for name, got, want in zip(names, grads, t_grads):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL, msg=lambda m: f"grad of {name}: {m}")

    if with_lengths:
        with torch.no_grad():
            alone_out, alone_final = run_torch_one_by_one(module, x, state, lengths, batch_first)
        torch.testing.assert_close(out.detach(), alone_out, atol=ATOL, rtol=RTOL)
        for got, want in zip(final, alone_final):
            torch.testing.assert_close(got.detach(), want, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("num_layers, bidirectional, batch_first, with_lengths", COMBINATIONS, ids=COMBINATION_IDS)
@pytest.mark.parametrize("kind", [k for k in TORCH_KINDS if k != "lstm-np"])
def test_from_torch(kind, num_layers, bidirectional, batch_first, with_lengths):
    module_class, torch_options, _ = TORCH_KINDS[kind]
    torch.manual_seed(0)
    module = module_class(D, H, num_layers=num_layers, bidirectional=bidirectional,
                          batch_first=batch_first, **torch_options)
    layer = Recurrent.from_torch(module)
    assert layer.uses_fused
    assert len(layer.cells) == num_layers * (2 if bidirectional else 1)
    for _, ours, theirs in torch_parameter_pairs(layer, module):
        assert ours is not theirs  # copied, not shared
        torch.testing.assert_close(ours.detach(), theirs.detach(), atol=0, rtol=0)
    compare(layer, module, with_lengths, batch_first, given_state=True)
    compare(layer, module, with_lengths, batch_first, given_state=False)


@pytest.mark.parametrize("num_layers, bidirectional, batch_first, with_lengths", COMBINATIONS, ids=COMBINATION_IDS)
@pytest.mark.parametrize("kind", list(TORCH_KINDS))
def test_to_torch(kind, num_layers, bidirectional, batch_first, with_lengths):
    module_class, _, cell_options = TORCH_KINDS[kind]
    torch.manual_seed(0)
    layer = Recurrent(input_size=D, hidden_size=H, num_layers=num_layers, bidirectional=bidirectional,
                      batch_first=batch_first, **cell_options)
    with torch.no_grad():  # biases start at zero: make every parameter matter
        for p in layer.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    assert layer.uses_fused
    module = layer.to_torch()
    assert isinstance(module, module_class)
    assert (module.num_layers, module.bidirectional, module.batch_first) == (num_layers, bidirectional, batch_first)
    assert (module.input_size, module.hidden_size) == (D, H)
    if module_class is nn.RNN:
        assert module.nonlinearity == cell_options["nonlinearity"]
    compare(layer, module, with_lengths, batch_first, given_state=True)


@pytest.mark.parametrize("options", [
    {"cell": "lstm"}, {"cell": "lstm", "variant": "np"}, {"cell": "gru"},
    {"cell": "rnn", "nonlinearity": "tanh"}, {"cell": "rnn", "nonlinearity": "relu"},
    {"cell": "lstm", "num_layers": 2, "bidirectional": True},
    {"cell": "gru", "num_layers": 2, "batch_first": False},
], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_uses_fused_for_torch_configurations(options):
    assert Recurrent(input_size=D, hidden_size=H, **options).uses_fused


@pytest.mark.parametrize("options", [
    {"cell": "lstm", "variant": "peephole"},
    {"cell": "lstm", "variant": "cifg"},
    {"cell": "lstm", "variant": "fgr"},
    {"cell": "gru", "variant": "original"},
    {"cell": "additive", "input_size": H},
    {"cell": "lstm", "skip": 1},
    {"cell": "gru", "skip": 3},
    {"cell": "rnn", "nonlinearity": "tanh", "skip": 2},
    {"cell": "lstm", "num_layers": 2, "residual": True},
    {"cell": "rnn", "nonlinearity": "relu", "num_layers": 2, "residual": True},
    {"cell": "lstm", "num_layers": 2, "dropout": 0.3, "variational": True},
    {"cell": "gru", "num_layers": 2, "dropout": 0.3, "variational": True},
], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_not_fused_otherwise(options):
    options = {"input_size": D, **options}
    assert not Recurrent(hidden_size=H, **options).uses_fused
