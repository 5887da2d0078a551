"""Every cell and variant against the reference loop (tests/reference.py).

Checks, per docs/core.md: the documented attributes and parameter shapes of each
cell, one `step` against the reference equations, `Recurrent.forward` against the
reference (outputs, final state, gradients of the input, the initial state and every
parameter) in float32 (~1e-5) and float64 (~1e-10), `torch.autograd.gradcheck` in
float64, and the initialisation defaults and their overrides.
"""
import math

import pytest
import torch
from torch.func import functional_call

from rnnkit.cells import make_cell
from rnnkit.layers import Recurrent

from reference import (
    CELL_IDS, CELL_OPTIONS, LSTM_GATES, LSTM_PEEPHOLES, cell_kind, make_inputs, num_gates,
    random_state, reference_cell_step, reference_recurrent, state_names, tolerance,
)

N, L, D, H = 3, 6, 4, 5

TORCH_KIND = {
    "rnn-tanh": "rnn_tanh", "rnn-relu": "rnn_relu", "additive": None,
    "lstm-standard": "lstm", "lstm-np": "lstm", "gru-standard": "gru", "gru-original": None,
    **{f"lstm-{v}": None for v in ("peephole", "nig", "nfg", "nog", "niaf", "noaf", "cifg", "fgr")},
}


def input_size_for(cell_id):
    """`additive` needs input size = hidden size."""
    return H if cell_id == "additive" else D


def layer_config(cell_id, **options):
    return {**CELL_OPTIONS[cell_id], "input_size": input_size_for(cell_id), "hidden_size": H, **options}


def cell_options(cell_id):
    options = dict(CELL_OPTIONS[cell_id])
    return options.pop("cell"), options


def documented_parameters(cell_id):
    """The parameter names docs/core.md gives each cell."""
    name, options = cell_options(cell_id)
    if name == "additive":
        return set()
    names = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"}
    if name == "lstm":
        names |= {f"weight_peep_{g}" for g in LSTM_PEEPHOLES[options["variant"]]}
        if options["variant"] == "fgr":
            names.add("weight_gate_hh")
    return names


def random_cell_state(kind, n_batch, dtype, seed=3):
    generator = torch.Generator().manual_seed(seed)
    return tuple(0.5 * torch.randn(n_batch, H, generator=generator).to(dtype) for _ in state_names(kind))


def perturb_parameters(module, seed=7):
    """Give every parameter (biases, zero-initialised ones included) a random nonzero value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.4 * torch.randn(p.shape, generator=generator).to(p.dtype))


def weighted_sum(tensors, seed=11):
    """A scalar loss that weights every element differently, so gradients are informative."""
    generator = torch.Generator().manual_seed(seed)
    total = 0
    for t in tensors:
        total = total + (t * torch.randn(t.shape, generator=generator).to(t.dtype)).sum()
    return total


def gradients(loss, inputs):
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [torch.zeros_like(i) if g is None else g for i, g in zip(inputs, grads)]


# ---- the cell API ---------------------------------------------------------------

@pytest.mark.parametrize("cell_id", CELL_IDS)
def test_cell_attributes_and_parameter_shapes(cell_id):
    name, options = cell_options(cell_id)
    kind = cell_kind(**CELL_OPTIONS[cell_id])
    cell = make_cell(name, input_size_for(cell_id), H, **options)
    gates = num_gates(kind)

    if name == "additive":
        # core.md lists no gate blocks for `additive` yet fixes project_input's output
        # as (..., G·H); the input itself (N, H) is that projection, so G·H = H.
        x = make_inputs(N, L, H)
        torch.testing.assert_close(cell.project_input(x), x, atol=0, rtol=0)
        assert cell.project_input(x).shape[-1] == cell.num_gates * H
    else:
        assert cell.num_gates == gates
    assert tuple(cell.state_names) == state_names(kind)
    if cell_id in TORCH_KIND:
        assert cell.torch_kind == TORCH_KIND[cell_id]
    assert {n for n, _ in cell.named_parameters()} == documented_parameters(cell_id)
    if name != "additive":
        assert cell.weight_ih.shape == (gates * H, input_size_for(cell_id))
        assert cell.weight_hh.shape == (gates * H, H)
        assert cell.bias_ih.shape == (gates * H,)
        assert cell.bias_hh.shape == (gates * H,)
    if name == "lstm":
        for g in "ifo":
            peephole = getattr(cell, f"weight_peep_{g}", None)
            if g in LSTM_PEEPHOLES[options["variant"]]:
                assert peephole.shape == (H,)
            else:
                assert peephole is None
        if options["variant"] == "fgr":
            assert cell.weight_gate_hh.shape == (3 * H, 3 * H)

    state = cell.initial_state(N, torch.float64, torch.device("cpu"))
    assert len(state) == len(state_names(kind))
    for s in state:
        assert s.shape == (N, H) and s.dtype == torch.float64
        assert torch.count_nonzero(s) == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("cell_id", CELL_IDS)
def test_cell_step_matches_reference(cell_id, dtype):
    """cell.step(cell.project_input(x_t), state) follows the equations; project_input
    works on any number of leading dimensions."""
    name, options = cell_options(cell_id)
    kind = cell_kind(**CELL_OPTIONS[cell_id])
    cell = make_cell(name, input_size_for(cell_id), H, **options).to(dtype)
    perturb_parameters(cell)
    x = make_inputs(N, L, input_size_for(cell_id), dtype)
    atol, rtol = tolerance(dtype)

    projected_all = cell.project_input(x)  # (N, L, G·H)
    state = random_cell_state(kind, N, dtype)
    expected_state = state
    for t in range(L):
        projected = cell.project_input(x[:, t])  # (N, G·H)
        torch.testing.assert_close(projected_all[:, t], projected, atol=atol, rtol=rtol)
        state = cell.step(projected, state)
        expected_state = reference_cell_step(cell, x[:, t], expected_state, kind)
        assert len(state) == len(expected_state)
        for got, want in zip(state, expected_state):
            torch.testing.assert_close(got, want, atol=atol, rtol=rtol)


# ---- Recurrent against the reference ----------------------------------------------

@pytest.mark.parametrize("initial", ["zeros", "given"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("cell_id", CELL_IDS)
def test_recurrent_matches_reference(cell_id, dtype, initial):
    """Outputs, final state and gradients of x, of the initial state and of every
    parameter equal the reference loop's."""
    config = layer_config(cell_id)
    torch.manual_seed(0)
    layer = Recurrent(**config).to(dtype).eval()
    perturb_parameters(layer)
    params = [p for _, p in layer.named_parameters()]
    x = make_inputs(N, L, config["input_size"], dtype).requires_grad_()
    state = random_state(config, N, dtype) if initial == "given" else None
    if state is not None:
        state = tuple(s.requires_grad_() for s in state)
    leaves = [x, *(state or ()), *params]
    atol, rtol = tolerance(dtype)

    out, final = layer(x, state)
    got_grads = gradients(weighted_sum([out, *final]), leaves)
    ref_out, ref_final = reference_recurrent(layer, x, state, **config)
    ref_grads = gradients(weighted_sum([ref_out, *ref_final]), leaves)

    assert isinstance(final, tuple) and len(final) == len(ref_final)
    torch.testing.assert_close(out, ref_out, atol=atol, rtol=rtol)
    for got, want in zip(final, ref_final):
        torch.testing.assert_close(got, want, atol=atol, rtol=rtol)
    names = ["x", *[f"state[{i}]" for i in range(len(state or ()))],
             *[n for n, _ in layer.named_parameters()]]
    for name, got, want in zip(names, got_grads, ref_grads):
        torch.testing.assert_close(got, want, atol=atol, rtol=rtol, msg=lambda m: f"grad of {name}: {m}")


def gradcheck_layer(config, lengths=None, n_batch=2, length=3):
    """torch.autograd.gradcheck of a float64 Recurrent w.r.t. x, the initial state and
    every parameter."""
    torch.manual_seed(0)
    layer = Recurrent(**config).double().eval()
    perturb_parameters(layer)
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in layer.named_parameters()]
    x = make_inputs(n_batch, length, config["input_size"], torch.float64).requires_grad_()
    state = tuple(s.requires_grad_() for s in random_state(config, n_batch, torch.float64))

    n_state = len(state)

    def run(x, *rest):
        state, values = rest[:n_state], rest[n_state:]
        out, final = functional_call(layer, dict(zip(names, values)), (x, tuple(state)),
                                     {"lengths": lengths})
        return (out, *final)

    assert torch.autograd.gradcheck(run, (x, *state, *params), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("cell_id", CELL_IDS)
def test_gradcheck(cell_id):
    small = {**CELL_OPTIONS[cell_id], "input_size": 2 if cell_id == "additive" else 3, "hidden_size": 2}
    gradcheck_layer(small)


@pytest.mark.parametrize("cell_id, options", [
    ("lstm-peephole", {"num_layers": 2, "bidirectional": True, "skip": 3}),
    ("gru-original", {"num_layers": 2, "residual": True, "skip": 1}),
    ("lstm-fgr", {"bidirectional": True, "skip": 2}),
    ("rnn-tanh", {"num_layers": 2, "bidirectional": True, "residual": True}),
])
def test_gradcheck_layer_options(cell_id, options):
    config = {**CELL_OPTIONS[cell_id], "input_size": 3, "hidden_size": 2, **options}
    gradcheck_layer(config, lengths=torch.tensor([3, 2]))


# ---- initialisation ------------------------------------------------------------

RECURRENT_CELLS = [c for c in CELL_IDS if c not in ("additive", "irnn")]
INIT_H, INIT_D = 8, 6


def gate_blocks(weight, hidden_size):
    return [weight[k * hidden_size:(k + 1) * hidden_size] for k in range(weight.shape[0] // hidden_size)]


def forget_block(cell_id):
    """Index of the f block in the weights, or None where the variant has no f gate."""
    name, options = cell_options(cell_id)
    if name != "lstm":
        return None
    gates = LSTM_GATES[options["variant"]]
    return gates.index("f") if "f" in gates else None


def init_layer(cell_id, **options):
    torch.manual_seed(0)
    config = {**CELL_OPTIONS[cell_id], "input_size": INIT_D, "hidden_size": INIT_H,
              "num_layers": 2, "bidirectional": True, **options}
    return Recurrent(**config)


@pytest.mark.parametrize("cell_id", RECURRENT_CELLS)
def test_default_init(cell_id):
    """Orthogonal H×H recurrent blocks, inputs U(−1/√H, 1/√H), biases zero except the
    LSTM forget gate's bias_ih (1.0), peepholes and fgr's gate matrix U(−1/√H, 1/√H)."""
    bound = 1 / math.sqrt(INIT_H)
    eye = torch.eye(INIT_H)
    for cell in init_layer(cell_id).cells:
        for block in gate_blocks(cell.weight_hh.detach(), INIT_H):
            torch.testing.assert_close(block @ block.t(), eye, atol=1e-5, rtol=0)
        w_ih = cell.weight_ih.detach()
        assert w_ih.abs().max() <= bound and w_ih.abs().max() > bound / 2
        assert torch.count_nonzero(cell.bias_hh) == 0
        expected_bias = torch.zeros_like(cell.bias_ih)
        f = forget_block(cell_id)
        if f is not None:
            expected_bias[f * INIT_H:(f + 1) * INIT_H] = 1.0
        torch.testing.assert_close(cell.bias_ih.detach(), expected_bias, atol=0, rtol=0)
        for name in ("weight_peep_i", "weight_peep_f", "weight_peep_o", "weight_gate_hh"):
            value = getattr(cell, name, None)
            if value is not None:
                assert value.abs().max() <= bound and torch.count_nonzero(value) > 0


def test_irnn_init_is_identity_with_zero_bias():
    for cell in init_layer("irnn", bidirectional=False).cells:
        torch.testing.assert_close(cell.weight_hh.detach(), torch.eye(INIT_H), atol=0, rtol=0)
        assert torch.count_nonzero(cell.bias_ih) == 0 and torch.count_nonzero(cell.bias_hh) == 0
        assert cell.weight_ih.abs().max() <= 1 / math.sqrt(INIT_H)


@pytest.mark.parametrize("cell_id", ["lstm-standard", "lstm-peephole", "lstm-nig", "lstm-fgr"])
def test_forget_bias_override(cell_id):
    f = forget_block(cell_id)
    for cell in init_layer(cell_id, forget_bias=2.5).cells:
        bias = cell.bias_ih.detach()
        assert torch.all(bias[f * INIT_H:(f + 1) * INIT_H] == 2.5)
        bias[f * INIT_H:(f + 1) * INIT_H] = 0
        assert torch.count_nonzero(bias) == 0


@pytest.mark.parametrize("cell_id", ["rnn-tanh", "lstm-standard", "lstm-cifg", "gru-standard", "gru-original"])
def test_uniform_recurrent_init_override(cell_id):
    bound = 1 / math.sqrt(INIT_H)
    for cell in init_layer(cell_id, recurrent_init="uniform").cells:
        w_hh = cell.weight_hh.detach()
        assert w_hh.abs().max() <= bound and w_hh.abs().max() > bound / 2
        block = gate_blocks(w_hh, INIT_H)[0]
        assert not torch.allclose(block @ block.t(), torch.eye(INIT_H), atol=1e-2)


@pytest.mark.parametrize("cell_id", ["rnn-tanh", "rnn-relu"])
def test_identity_recurrent_init_override(cell_id):
    for cell in init_layer(cell_id, recurrent_init="identity").cells:
        torch.testing.assert_close(cell.weight_hh.detach(), torch.eye(INIT_H), atol=0, rtol=0)


def test_make_cell_uses_the_same_defaults():
    cell = make_cell("lstm", INIT_D, INIT_H, variant="nog")  # blocks i, f, g
    assert cell.weight_hh.shape == (3 * INIT_H, INIT_H)
    for block in gate_blocks(cell.weight_hh.detach(), INIT_H):
        torch.testing.assert_close(block @ block.t(), torch.eye(INIT_H), atol=1e-5, rtol=0)
    bias = cell.bias_ih.detach()
    assert torch.all(bias[INIT_H:2 * INIT_H] == 1.0)
    assert torch.count_nonzero(bias[:INIT_H]) == 0 and torch.count_nonzero(bias[2 * INIT_H:]) == 0
