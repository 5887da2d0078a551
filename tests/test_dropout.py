"""rnnkit's CPU dropout (16-bit slices of 64-bit draws) and its use between the layers
of torch's fused kernels: the mask's statistics, the scale, gradients, seeding, errors,
and a stacked `Recurrent` in training against the same layers run one by one."""
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit.layers import Dropout, Recurrent, dropout
from rnnkit.layers import kernels
from rnnkit.layers.dropout import _MaskedScale, keep_mask


def scale_for(p):
    return 65536 / (65536 - round(p * 65536))


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5, 0.9])
def test_keep_rate_and_scale(p):
    torch.manual_seed(0)
    x = torch.ones(1 << 20)
    out = dropout(x, p)
    kept = out != 0
    # 1M draws: the standard error of the rate is below 5e-4
    assert abs(kept.double().mean().item() - (1 - p)) < 3e-3
    assert torch.allclose(out[kept], torch.full_like(out[kept], scale_for(p)))
    assert abs(out.double().mean().item() - 1.0) < 6e-3 / (1 - p)  # unbiased


def test_neighbouring_elements_are_independent():
    """Four elements share one 64-bit draw: their decisions must still be independent."""
    torch.manual_seed(1)
    p = 0.3
    keep, _ = keep_mask((1 << 20,), p)
    k = keep.view(-1, 4).double()
    q = 1 - p
    for i in range(4):
        for j in range(i + 1, 4):
            both = (k[:, i] * k[:, j]).mean().item()
            assert abs(both - q * q) < 4e-3, (i, j, both)


def test_odd_sizes_and_shapes():
    torch.manual_seed(2)
    for shape in [(1,), (3,), (5, 7), (2, 3, 5)]:
        x = torch.randn(shape)
        out = dropout(x, 0.5)
        assert out.shape == x.shape and out.dtype == x.dtype
        kept = out != 0
        assert torch.allclose(out[kept], x[kept] * 2.0)


def test_identity_outside_training_and_at_zero():
    x = torch.randn(4, 5)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x


def test_p_one_zeroes_everything():
    assert torch.equal(dropout(torch.randn(3, 4), 1.0), torch.zeros(3, 4))


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_bad_probability_names_it(p):
    with pytest.raises(ValueError, match=rf"dropout probability must lie in \[0, 1\], got {p}"):
        dropout(torch.randn(3), p)


def test_seeded_runs_repeat_and_differ_between_calls():
    x = torch.randn(64, 33)
    torch.manual_seed(7)
    a, b = dropout(x, 0.2), dropout(x, 0.2)
    torch.manual_seed(7)
    assert torch.equal(dropout(x, 0.2), a)
    assert not torch.equal(a, b)


def test_gradient_is_the_mask_times_scale():
    torch.manual_seed(3)
    x = torch.randn(6, 9, requires_grad=True)
    out = dropout(x, 0.25)
    g = torch.randn_like(out)
    out.backward(g)
    keep = out.detach() != 0
    assert torch.allclose(x.grad, g * keep * scale_for(0.25))


def test_gradcheck_float64():
    torch.manual_seed(4)
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    keep, scale = keep_mask(x.shape, 0.3)
    assert torch.autograd.gradcheck(lambda t: _MaskedScale.apply(t, keep, scale), (x,))


def test_bf16_input_keeps_its_dtype():
    torch.manual_seed(5)
    x = torch.randn(8, 8).bfloat16()
    out = dropout(x, 0.1)
    assert out.dtype == torch.bfloat16


def test_module_is_a_torch_dropout():
    m = Dropout(0.3)
    assert isinstance(m, nn.Dropout) and m.p == 0.3
    x = torch.randn(10, 10)
    m.eval()
    assert m(x) is x
    m.train()
    torch.manual_seed(6)
    a = m(x)
    torch.manual_seed(6)
    assert torch.equal(a, dropout(x, 0.3))


# -- between the layers of torch's fused kernel ------------------------------------------

N, L, D, H = 4, 7, 3, 5
LENGTHS = torch.tensor([7, 2, 5, 1])


def one_layer_at_a_time(stack: Recurrent, cell: str, **options) -> list[Recurrent]:
    """Single-layer `Recurrent`s holding the stack's weights, layer by layer."""
    dirs = stack.num_directions
    layers = []
    for k in range(stack.num_layers):
        layer = Recurrent(cell, D if k == 0 else H * dirs, H, bidirectional=dirs == 2,
                          batch_first=False, **options)
        for d in range(dirs):
            layer.cells[d].load_state_dict(stack.cells[k * dirs + d].state_dict())
        layers.append(layer)
    return layers


@pytest.mark.parametrize("cell,options", [("lstm", {}), ("gru", {"variant": "standard"}),
                                          ("rnn", {"nonlinearity": "tanh"})])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_stack_in_training_equals_its_layers_with_rnnkit_dropout(cell, options, bidirectional,
                                                                  with_lengths, monkeypatch):
    """On CPU a stacked torch-equivalent layer in training runs torch's kernel one layer
    per call with rnnkit's dropout between: the same as running the layers by hand."""
    monkeypatch.setattr(kernels, "replaces_fused", lambda *args: False)  # torch's kernel for all
    torch.manual_seed(0)
    stack = Recurrent(cell, D, H, num_layers=3, dropout=0.4, bidirectional=bidirectional,
                      batch_first=True, **options)
    assert stack.uses_fused
    layers = one_layer_at_a_time(stack, cell, **options)
    x = torch.randn(N, L, D, requires_grad=True)
    lengths = LENGTHS if with_lengths else None
    state = tuple(torch.randn(3 * stack.num_directions, N, H) for _ in range(stack.num_states))

    torch.manual_seed(11)
    out, final = stack(x, state, lengths=lengths)
    out.sum().backward()
    grads = [x.grad.clone()] + [p.grad.clone() for p in stack.parameters()]

    # by hand: time-major, packed when ragged, as the fused path drops out
    x.grad = None
    dirs = stack.num_directions
    torch.manual_seed(11)
    h = x.transpose(0, 1)
    if with_lengths:
        h = pack_padded_sequence(h, lengths, enforce_sorted=False)
    finals = []
    for k, layer in enumerate(layers):
        if k > 0:
            h = h._replace(data=dropout(h.data, 0.4)) if with_lengths else dropout(h, 0.4)
        h, f = layer(h, tuple(s[k * dirs:(k + 1) * dirs] for s in state))
        finals.append(f)
    if with_lengths:
        h, _ = pad_packed_sequence(h, total_length=L)
    h = h.transpose(0, 1)
    h.sum().backward()
    expected_final = tuple(torch.cat(parts) for parts in zip(*finals))
    torch.testing.assert_close(out, h)
    for a, b in zip(final, expected_final):
        torch.testing.assert_close(a, b)
    ref_grads = [x.grad] + [p.grad for layer in layers for p in layer.parameters()]
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


def test_stack_in_eval_is_unchanged_by_dropout():
    torch.manual_seed(0)
    stack = Recurrent("lstm", D, H, num_layers=2, dropout=0.5, batch_first=False)
    reference = Recurrent("lstm", D, H, num_layers=2, batch_first=False)
    reference.load_state_dict(stack.state_dict())
    stack.eval()
    x = torch.randn(L, N, D)
    torch.testing.assert_close(stack(x)[0], reference(x)[0])


def test_stack_dropout_is_active_in_training():
    torch.manual_seed(0)
    stack = Recurrent("lstm", D, H, num_layers=2, dropout=0.5, batch_first=False)
    x = torch.randn(L, N, D)
    torch.manual_seed(1)
    a = stack(x)[0]
    torch.manual_seed(2)
    b = stack(x)[0]
    assert not torch.allclose(a, b)
