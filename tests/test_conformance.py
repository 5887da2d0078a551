"""The conformance suite: every cell through every layer option of `Recurrent`.

Layer options (docs/core.md): stacked, bidirectional, residual, skip ∈ {1, 3}, dropout
(train mode), variational dropout, lengths, PackedSequence in → PackedSequence out,
batch_first=False. Options are combined in a handful of profiles so that every cell
meets every option and most pairs of options meet, without the full product.

Checked per cell and profile: shapes of the outputs and of every state tensor, equality
with the reference loop (eval mode), seeded determinism, a state_dict save/load round
trip, that a few Adam steps lower a regression loss, and that padded steps are zero and
inert. Then, over narrower grids: `step` L times equals `forward`, state carried over
two chunks equals one forward, where dropout acts (and where not), and that a
variational mask is constant over time.
"""
import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.layers import Recurrent

from reference import (
    CELL_IDS, CELL_OPTIONS, LAYER_DEFAULTS, cell_kind, make_inputs, random_state,
    reference_recurrent, state_names,
)

N, L, D, H = 4, 6, 3, 5
LENGTHS = torch.tensor([6, 3, 1, 5])  # unsorted, one full, one of length 1

# (id, layer options, input mode): "dense" (no lengths), "lengths", "packed".
PROFILES = [
    ("plain", {}, "dense"),
    ("stacked-bidir-lengths", {"num_layers": 2, "bidirectional": True}, "lengths"),
    ("residual-dropout-timefirst", {"num_layers": 2, "residual": True, "dropout": 0.3, "batch_first": False}, "dense"),
    ("skip3-bidir-packed", {"skip": 3, "bidirectional": True}, "packed"),
    ("skip1-stacked-variational-lengths",
     {"num_layers": 2, "skip": 1, "dropout": 0.3, "variational": True}, "lengths"),
    ("skip3-residual-bidir-timefirst-lengths",
     {"num_layers": 2, "residual": True, "bidirectional": True, "skip": 3, "batch_first": False}, "lengths"),
    ("variational-residual-dropout-timefirst-packed",
     {"num_layers": 3, "residual": True, "dropout": 0.3, "variational": True, "batch_first": False}, "packed"),
]
PROFILE_OPTIONS = {name: (options, mode) for name, options, mode in PROFILES}


def possible(cell_id, options):
    """`additive` needs input size = hidden size in every layer: a stacked
    bidirectional additive layer cannot exist (tested in test_errors.py)."""
    return not (cell_id == "additive" and options.get("num_layers", 1) > 1 and options.get("bidirectional"))


CASES = [pytest.param(c, p, id=f"{c}-{p}") for c in CELL_IDS for p, options, _ in PROFILES if possible(c, options)]


def build_config(cell_id, options):
    return {**CELL_OPTIONS[cell_id], "input_size": H if cell_id == "additive" else D, "hidden_size": H, **options}


def build(config, seed=0):
    torch.manual_seed(seed)
    return Recurrent(**config)


def run(layer, config, x, mode, state=None, lengths=LENGTHS):
    """Forward with batch-first x (N, L, D) in the profile's input mode; returns the
    outputs batch-first (N, L, dirs·H), zero at padded steps, and the state tuple."""
    batch_first = config.get("batch_first", True)
    if mode == "packed":
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, final = layer(packed, state)
        assert isinstance(out, PackedSequence)
        torch.testing.assert_close(out.sorted_indices, packed.sorted_indices, atol=0, rtol=0)
        out, out_lengths = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        assert torch.equal(out_lengths, lengths)
        return out, final
    xs = x if batch_first else x.transpose(0, 1)
    if mode == "lengths":
        out, final = layer(xs, state, lengths=lengths)
    else:
        out, final = layer(xs, state)
    assert not isinstance(out, PackedSequence)
    return (out if batch_first else out.transpose(0, 1)), final


def reference(layer, config, x, mode, state=None, lengths=LENGTHS):
    """The reference for `run` (batch-first in and out)."""
    config = {**config, "batch_first": True}
    return reference_recurrent(layer, x, state, None if mode == "dense" else lengths, **config)


def n_state_entries(config):
    config = {**LAYER_DEFAULTS, **config}
    return len(state_names(cell_kind(**config))) + max(config["skip"] - 1, 0)


def regression_loss(out, target):
    return ((out - target) ** 2).mean()


# ---- every cell × every profile ----------------------------------------------------

@pytest.mark.parametrize("cell_id, profile", CASES)
def test_shapes(cell_id, profile):
    options, mode = PROFILE_OPTIONS[profile]
    config = build_config(cell_id, options)
    layer = build(config).train()
    dirs = 2 if options.get("bidirectional") else 1
    layers = options.get("num_layers", 1)
    x = make_inputs(N, L, config["input_size"])

    assert len(layer.cells) == layers * dirs
    for state in (None, random_state(config, N)):
        out, final = run(layer, config, x, mode, state)
        assert out.shape == (N, L, dirs * H)
        assert isinstance(final, tuple) and len(final) == n_state_entries(config)
        for entry in final:
            assert entry.shape == (layers * dirs, N, H)
            assert torch.isfinite(entry).all()
    if options.get("batch_first") is False and mode == "dense":
        out, _ = layer(x.transpose(0, 1))
        assert out.shape == (L, N, dirs * H)


@pytest.mark.parametrize("cell_id, profile", CASES)
def test_matches_reference(cell_id, profile):
    """Eval mode, float64: outputs and final state equal the reference loop, with and
    without a given initial state."""
    options, mode = PROFILE_OPTIONS[profile]
    config = build_config(cell_id, options)
    layer = build(config).double().eval()
    with torch.no_grad():  # make biases and skip weights matter
        for p in layer.parameters():
            p.add_(0.1 * torch.randn(p.shape, dtype=p.dtype))
    x = make_inputs(N, L, config["input_size"], torch.float64)
    for state in (None, random_state(config, N, torch.float64)):
        with torch.no_grad():
            out, final = run(layer, config, x, mode, state)
            ref_out, ref_final = reference(layer, config, x, mode, state)
        torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=1e-10)
        assert len(final) == len(ref_final)
        for e, (got, want) in enumerate(zip(final, ref_final)):
            torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10, msg=lambda m: f"state[{e}]: {m}")


@pytest.mark.parametrize("cell_id, profile", CASES)
def test_seeded_determinism(cell_id, profile):
    """The same seed gives the same parameters and, in train mode (dropout drawn),
    bit-identical outputs and state."""
    options, mode = PROFILE_OPTIONS[profile]
    config = build_config(cell_id, options)
    x = make_inputs(N, L, config["input_size"])
    results = []
    for _ in range(2):
        layer = build(config, seed=3).train()
        torch.manual_seed(4)
        out, final = run(layer, config, x, mode)
        results.append((layer.state_dict(), out, final))
    (sd1, out1, final1), (sd2, out2, final2) = results
    assert sd1.keys() == sd2.keys()
    for key in sd1:
        assert torch.equal(sd1[key], sd2[key]), key
    assert torch.equal(out1, out2)
    for a, b in zip(final1, final2):
        assert torch.equal(a, b)


@pytest.mark.parametrize("cell_id, profile", CASES)
def test_state_dict_round_trip(cell_id, profile, tmp_path):
    options, mode = PROFILE_OPTIONS[profile]
    config = build_config(cell_id, options)
    layer = build(config, seed=1).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    path = tmp_path / "recurrent.pt"
    torch.save(layer.state_dict(), path)

    fresh = build(config, seed=2).eval()
    fresh.load_state_dict(torch.load(path))
    x = make_inputs(N, L, config["input_size"])
    state = random_state(config, N)
    with torch.no_grad():
        out, final = run(layer, config, x, mode, state)
        fresh_out, fresh_final = run(fresh, config, x, mode, state)
    assert torch.equal(out, fresh_out)
    for a, b in zip(final, fresh_final):
        assert torch.equal(a, b)


@pytest.mark.parametrize("cell_id, profile", [c for c in CASES if c.values[0] != "additive"])
def test_adam_lowers_loss(cell_id, profile):
    """A few Adam steps (train mode) lower a regression loss measured in eval mode.
    (`additive` has no parameters of its own.)"""
    options, mode = PROFILE_OPTIONS[profile]
    config = build_config(cell_id, options)
    layer = build(config)
    x = make_inputs(N, L, config["input_size"])
    dirs = 2 if options.get("bidirectional") else 1
    target = 0.5 * make_inputs(N, L, dirs * H, seed=9)
    if mode != "dense":
        target = target * (torch.arange(L)[None, :, None] < LENGTHS[:, None, None])

    def eval_loss():
        layer.eval()
        with torch.no_grad():
            return regression_loss(run(layer, config, x, mode)[0], target).item()

    before = eval_loss()
    optimiser = torch.optim.Adam(layer.parameters(), lr=1e-2)
    layer.train()
    torch.manual_seed(0)
    for _ in range(5):
        optimiser.zero_grad()
        regression_loss(run(layer, config, x, mode)[0], target).backward()
        optimiser.step()
    assert eval_loss() < before


PADDING_CASES = [c for c in CASES if PROFILE_OPTIONS[c.values[1]][1] != "dense"]


@pytest.mark.parametrize("cell_id, profile", PADDING_CASES)
def test_padded_steps_are_zero_and_inert(cell_id, profile):
    """Outputs at padded steps are zero; what the padded steps hold changes neither the
    outputs nor the final state; each sequence's final state is the one it has alone."""
    options, mode = PROFILE_OPTIONS[profile]
    config = build_config(cell_id, options)
    layer = build(config).eval()
    x = make_inputs(N, L, config["input_size"])
    padded = torch.arange(L)[None, :] >= LENGTHS[:, None]  # (N, L)
    garbage = x.clone()
    garbage[padded] = 100.0
    state = random_state(config, N)
    with torch.no_grad():
        out, final = run(layer, config, x, mode, state)
        out_garbage, final_garbage = run(layer, config, garbage, mode, state)
    assert torch.count_nonzero(out[padded]) == 0
    torch.testing.assert_close(out, out_garbage, atol=0, rtol=0)
    for a, b in zip(final, final_garbage):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    for n in range(N):
        steps = int(LENGTHS[n])
        with torch.no_grad():
            alone_out, alone_final = run(layer, config, x[n:n + 1, :steps], "dense",
                                         tuple(s[:, n:n + 1] for s in state))
        torch.testing.assert_close(out[n:n + 1, :steps], alone_out, atol=1e-5, rtol=1e-5)
        for a, b in zip(final, alone_final):
            torch.testing.assert_close(a[:, n:n + 1], b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell_id", CELL_IDS)
def test_packed_output_equals_lengths_output(cell_id):
    config = build_config(cell_id, {"num_layers": 2, "skip": 3, "residual": True})
    layer = build(config).eval()
    x = make_inputs(N, L, config["input_size"])
    with torch.no_grad():
        packed_out, packed_final = run(layer, config, x, "packed")
        out, final = run(layer, config, x, "lengths")
    torch.testing.assert_close(packed_out, out, atol=1e-6, rtol=1e-6)
    for a, b in zip(packed_final, final):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


# ---- step and chunks ---------------------------------------------------------------

UNIDIRECTIONAL = [
    ("one-layer", {}),
    ("stacked", {"num_layers": 2}),
    ("skip3", {"skip": 3}),
    ("stacked-residual-skip1", {"num_layers": 2, "residual": True, "skip": 1}),
    ("stacked-skip3-timefirst", {"num_layers": 2, "skip": 3, "batch_first": False}),
]
STEP_CASES = [pytest.param(c, o, id=f"{c}-{name}") for c in CELL_IDS for name, o in UNIDIRECTIONAL]


@pytest.mark.parametrize("cell_id, options", STEP_CASES)
def test_step_matches_forward(cell_id, options):
    """`step` run L times, carrying the state (skip history included), equals forward."""
    config = build_config(cell_id, options)
    layer = build(config).eval()
    x = make_inputs(N, L, config["input_size"])
    for initial in (None, random_state(config, N)):
        with torch.no_grad():
            out, final = run(layer, config, x, "dense", initial)
            state = initial
            for t in range(L):
                out_t, state = layer.step(x[:, t], state)
                assert out_t.shape == (N, H)
                torch.testing.assert_close(out_t, out[:, t], atol=1e-5, rtol=1e-5)
        assert len(state) == len(final)
        for a, b in zip(state, final):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell_id, options", STEP_CASES)
def test_state_carried_over_chunks(cell_id, options):
    """forward over x[:, :2] then x[:, 2:] carrying the state equals one forward over x
    (a chunk shorter than the skip distance included)."""
    config = build_config(cell_id, options)
    layer = build(config).eval()
    x = make_inputs(N, L, config["input_size"])
    initial = random_state(config, N)
    with torch.no_grad():
        whole, whole_final = run(layer, config, x, "dense", initial)
        first, state = run(layer, config, x[:, :2], "dense", initial)
        second, final = run(layer, config, x[:, 2:], "dense", state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, atol=1e-5, rtol=1e-5)
    for a, b in zip(final, whole_final):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# ---- dropout ------------------------------------------------------------------------

@pytest.mark.parametrize("variational", [False, True], ids=["standard", "variational"])
@pytest.mark.parametrize("cell_id", CELL_IDS)
def test_dropout_only_between_layers_in_training(cell_id, variational):
    """Dropout acts on the inputs of layers 2.. in training only: never on the first
    layer's input, the recurrent path, or after the last layer; never in eval mode."""
    bidirectional = cell_id != "additive"
    dirs = 2 if bidirectional else 1
    x = make_inputs(N, L, H if cell_id == "additive" else D)

    def outputs(num_layers, dropout, train, seed=5):
        config = build_config(cell_id, {"num_layers": num_layers, "bidirectional": bidirectional,
                                        "dropout": dropout, "variational": variational})
        layer = build(config).train(train)
        torch.manual_seed(seed)
        with torch.no_grad():
            return layer(x)

    # Dropout and variational settings can switch between the fused and the loop path,
    # so equal means equal up to rounding; a dropped input changes values by O(1).

    # one layer: nothing to drop, in training or not
    out, final = outputs(1, 0.9, train=True)
    ref_out, ref_final = outputs(1, 0.0, train=False)
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
    for a, b in zip(final, ref_final):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)

    # two layers, eval mode: same as no dropout at all
    out, final = outputs(2, 0.5, train=False)
    ref_out, ref_final = outputs(2, 0.0, train=False)
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
    for a, b in zip(final, ref_final):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)

    # two layers, training: the first layer's state is untouched, the second's is not
    out, final = outputs(2, 0.5, train=True)
    assert not torch.allclose(out, ref_out)
    for a, b in zip(final, ref_final):
        torch.testing.assert_close(a[:dirs], b[:dirs], atol=1e-6, rtol=1e-5)
    assert any(not torch.allclose(a[dirs:], b[dirs:]) for a, b in zip(final, ref_final))


def relu_identity_stack(variational, residual=False, dropout=0.5):
    """Two relu RNN layers set up so that layer 1 output h1 > 0 everywhere and layer 2
    computes relu(W_ih · dropped(h1)) with W_ih = I and no recurrence: its output shows
    the dropout mask on its input (eval output = h1, or 2·h1 with the residual)."""
    config = {"cell": "rnn", "nonlinearity": "relu", "input_size": D, "hidden_size": H,
              "num_layers": 2, "dropout": dropout, "variational": variational, "residual": residual}
    layer = build(config)
    first, second = layer.cells
    with torch.no_grad():
        first.weight_ih.copy_(torch.rand(H, D) + 0.1)
        first.weight_hh.zero_()
        first.bias_ih.fill_(0.1)
        first.bias_hh.zero_()
        second.weight_ih.copy_(torch.eye(H))
        second.weight_hh.zero_()
        second.bias_ih.zero_()
        second.bias_hh.zero_()
    x = torch.rand(N, L, D) + 0.1
    return layer, x


@pytest.mark.parametrize("variational", [False, True], ids=["standard", "variational"])
def test_variational_mask_is_constant_over_time(variational):
    layer, x = relu_identity_stack(variational)
    with torch.no_grad():
        h1, _ = layer.eval()(x)
        torch.manual_seed(0)
        out, _ = layer.train()(x)
    assert (h1 > 0).all()
    dropped = out == 0  # (N, L, H)
    assert dropped.any() and not dropped.all()
    same_over_time = (dropped == dropped[:, :1]).all()
    if variational:
        assert same_over_time, "variational dropout must reuse one mask at every step"
    else:
        assert not same_over_time, "standard dropout draws a fresh mask at every step"


def test_residual_adds_the_undropped_input():
    """With residual=True the second layer returns its recurrent output plus its input
    before dropout: where dropout zeroed the input, the output is exactly that input."""
    layer, x = relu_identity_stack(variational=False, residual=True)
    with torch.no_grad():
        eval_out, _ = layer.eval()(x)
        h1 = eval_out / 2  # eval: relu(h1) + h1
        torch.manual_seed(0)
        out, _ = layer.train()(x)
    dropped = out == h1
    assert dropped.any() and not dropped.all()
    assert (out[~dropped] > h1[~dropped]).all()
