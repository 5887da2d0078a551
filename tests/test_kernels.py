"""The fast recurrence loops (rnnkit.layers.kernels) against `Recurrent`'s reference loop.

Each backend that can run here (the Python loops always, the C++ extension when it
builds) runs every cell with and without a skip connection, with and without lengths,
in float32 and float64; outputs, final state and the gradients of x, the initial state
and every parameter must equal the reference loop's (RNNKIT_KERNEL=loop) to 1e-5 /
1e-10. The custom autograd Function is gradchecked in float64, the two backends are
compared with each other, and the fallback without the extension is run in a fresh
process (RNNKIT_NO_EXTENSION=1, and a build that fails).
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from rnnkit.layers import Recurrent, kernels
from rnnkit.layers.kernels import extension, function, python_loop

from reference import CELL_IDS, CELL_OPTIONS, tolerance

N, L, D, H = 3, 7, 4, 5
LENGTHS = torch.tensor([7, 3, 1])

BACKENDS = ["python", "cpp"]


def backend_module(name):
    if name == "cpp" and not extension.available():
        pytest.skip(f"C++ extension unavailable here ({extension._state['reason']})")
    return python_loop if name == "python" else extension


def build(cell_id, dtype, seed=0, **options):
    config = dict(CELL_OPTIONS[cell_id])
    cell = config.pop("cell")
    torch.manual_seed(seed)
    layer = Recurrent(cell, H if cell == "additive" else D, H, **config, **options).to(dtype).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # every parameter nonzero and different, biases and skips included
        for p in layer.parameters():
            p.copy_(0.4 * torch.randn(p.shape, generator=generator).to(dtype))
    return layer


def run_layer(layer, x, state, lengths):
    """Outputs, final state, and the gradients of a loss that weights every element."""
    out, final = layer(x, state, lengths=lengths)
    generator = torch.Generator().manual_seed(5)
    loss = sum((t * torch.randn(t.shape, generator=generator).to(t.dtype)).sum() for t in (out, *final))
    leaves = [x, *state, *layer.parameters()]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return out, final, [torch.zeros_like(v) if g is None else g for v, g in zip(leaves, grads)]


def inputs(layer, dtype, seed=3):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(N, L, layer.input_size, generator=generator).to(dtype).requires_grad_()
    state = tuple((0.5 * torch.randn(1, N, H, generator=generator)).to(dtype).requires_grad_()
                  for _ in range(layer.num_states))
    return x, state


@pytest.fixture
def use_backend(monkeypatch):
    def use(name):
        module = backend_module(name)
        monkeypatch.setattr(function, "_backend", lambda x: module)
    return use


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["dense", "lengths"])
@pytest.mark.parametrize("skip", [0, 1, 3])
@pytest.mark.parametrize("cell_id", CELL_IDS)
def test_kernel_matches_reference_loop(cell_id, skip, with_lengths, dtype, backend, use_backend, monkeypatch):
    layer = build(cell_id, dtype, skip=skip)
    if layer.uses_fused:
        layer.residual = True  # one layer: no effect, but Recurrent takes its loop path
    lengths = LENGTHS if with_lengths else None
    x, state = inputs(layer, dtype)
    use_backend(backend)
    got = run_layer(layer, x, state, lengths)
    monkeypatch.setenv("RNNKIT_KERNEL", "loop")
    want = run_layer(layer, x, state, lengths)
    atol, rtol = tolerance(dtype)
    torch.testing.assert_close(got[0], want[0], atol=atol, rtol=rtol)
    assert len(got[1]) == len(want[1]) == layer.num_states
    for e, (a, b) in enumerate(zip(got[1], want[1])):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m: f"state[{e}]: {m}")
    names = ["x", *[f"state[{i}]" for i in range(len(state))], *[n for n, _ in layer.named_parameters()]]
    for name, a, b in zip(names, got[2], want[2]):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m: f"grad of {name}: {m}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell_id", CELL_IDS)
def test_kernel_stack_options(cell_id, backend, use_backend, monkeypatch):
    """Stacked, bidirectional, residual, skip 2 with lengths: the kernels inside the
    whole layer, against the reference loop (float64)."""
    options = {"num_layers": 2, "residual": True, "skip": 2}
    if cell_id != "additive":
        options["bidirectional"] = True
    layer = build(cell_id, torch.float64, **options)
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(N, L, layer.input_size, generator=generator, dtype=torch.float64).requires_grad_()
    state = tuple(s.requires_grad_() for s in 0.5 * torch.randn(
        layer.num_states, layer.num_layers * layer.num_directions, N, H, generator=generator, dtype=torch.float64))
    use_backend(backend)
    got = run_layer(layer, x, state, LENGTHS)
    monkeypatch.setenv("RNNKIT_KERNEL", "loop")
    want = run_layer(layer, x, state, LENGTHS)
    for a, b in zip([got[0], *got[1], *got[2]], [want[0], *want[1], *want[2]]):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def function_inputs(cell_id, skip, seed=0, n=2, length=4, inside=False):
    """The Recurrence Function's inputs for one direction of a small float64 layer:
    [xp, x, weight_ih, bias_in, h_init, c0, g0, weight_hh, bias_rec, weight_skip, peep,
    weight_gate]; with inside=True, x, weight_ih and bias_in instead of xp."""
    layer = build(cell_id, torch.float64, seed=seed, skip=skip)
    cell = layer.cells[0]
    spec, params = kernels.describe(cell, skip, layer.skip_weights[0] if skip else None)
    generator = torch.Generator().manual_seed(seed + 2)
    rand = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    if inside:
        xp, x = None, rand(length, n, cell.input_size)
        w_ih, b_in = cell.weight_ih.detach().clone(), cell.folded_bias().detach().clone()
    else:
        xp, x, w_ih, b_in = rand(length, n, spec.num_gates * H), None, None, None
    h_init = 0.5 * rand(max(skip - 1, 0) + 1, n, H)
    c0 = 0.5 * rand(n, H) if spec.has_cell_state else None
    g0 = torch.rand(n, 3 * H, generator=generator, dtype=torch.float64) if spec.gate_recurrence else None
    tensors = [xp, x, w_ih, b_in, h_init, c0, g0,
               *(None if p is None else p.detach().clone() for p in params.as_tuple())]
    return spec, tensors


def gradcheck_function(module, spec, tensors, lengths):
    present = [i for i, t in enumerate(tensors) if t is not None]
    leaves = [tensors[i].requires_grad_() for i in present]

    def run(*values):
        args = list(tensors)
        for i, v in zip(present, values):
            args[i] = v
        return function.Recurrence.apply(module, spec, lengths, *args)

    assert torch.autograd.gradcheck(run, leaves, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["dense", "lengths"])
@pytest.mark.parametrize("skip", [0, 3])
@pytest.mark.parametrize("cell_id", CELL_IDS)
def test_function_gradcheck(cell_id, skip, with_lengths, backend):
    spec, tensors = function_inputs(cell_id, skip)
    gradcheck_function(backend_module(backend), spec, tensors, torch.tensor([4, 2]) if with_lengths else None)


INSIDE_CELLS = [c for c in CELL_IDS if c.startswith(("lstm", "rnn", "irnn"))]


@pytest.mark.parametrize("with_lengths", [False, True], ids=["dense", "lengths"])
@pytest.mark.parametrize("skip", [0, 2])
@pytest.mark.parametrize("cell_id", INSIDE_CELLS)
def test_function_gradcheck_input_product_inside(cell_id, skip, with_lengths):
    """The extension's mode where the input product runs inside each step (x, W_ih, bias
    instead of xp): gradcheck, and equal to the xp mode."""
    backend_module("cpp")
    spec, tensors = function_inputs(cell_id, skip, inside=True)
    lengths = torch.tensor([4, 2]) if with_lengths else None
    if not extension.projects_inside(spec, 2, training=False):
        pytest.skip("no input product inside the steps on this CPU")
    gradcheck_function(extension, spec, tensors, lengths)
    x, w_ih, b_in = (t.detach() for t in tensors[1:4])
    xp_tensors = [x @ w_ih.t() + b_in, None, None, None, *tensors[4:]]
    inside = function.Recurrence.apply(extension, spec, lengths, *tensors)
    outside = function.Recurrence.apply(extension, spec, lengths, *xp_tensors)
    for a, b in zip(inside, outside):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("save", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["dense", "lengths"])
@pytest.mark.parametrize("skip", [0, 2])
@pytest.mark.parametrize("cell_id", CELL_IDS)
def test_backends_agree(cell_id, skip, with_lengths, save):
    """The C++ loops and the Python loops: same buffers forward, same gradients backward."""
    backend_module("cpp")
    spec, tensors = function_inputs(cell_id, skip, seed=4)
    xp, state, params = tensors[0], tensors[4:7], tensors[7:]
    lengths = torch.tensor([4, 2]) if with_lengths else None
    fwd = [m.forward(spec, xp, *state, *params, lengths, save) for m in (python_loop, extension)]
    for a, b in zip(*fwd):
        assert (a is None) == (b is None)
        if a is not None:  # without backward, c and the FGR gates may keep only the last step
            torch.testing.assert_close(a if save else a[-b.shape[0]:], b, atol=1e-12, rtol=1e-12)
    if not save:
        return
    hbuf, cs, gs, acts = fwd[0]
    generator = torch.Generator().manual_seed(9)
    grad_h = torch.randn(hbuf.shape, generator=generator, dtype=torch.float64)
    grad_c = torch.randn(cs.shape[1:], generator=generator, dtype=torch.float64) if cs is not None else None
    grad_g = torch.randn(gs.shape[1:], generator=generator, dtype=torch.float64) if gs is not None else None
    bwd = [m.backward(spec, grad_h, grad_c, grad_g, hbuf, cs, gs, acts, *params, lengths)
           for m in (python_loop, extension)]
    for a, b in zip(*bwd):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def check_two_threads(cell_id, skip, n_batch, hidden, length, monkeypatch, after=lambda stage: None, threads=2):
    """One loop layer (float64, with lengths) on the extension with two threads (or
    `threads`) against the Python loops: outputs, state and all gradients, then the
    extension's loop without a backward. after(stage) runs once the extension's
    "forward", "backward" and "inference" are done."""
    module = backend_module("cpp")
    threads, wanted = torch.get_num_threads(), threads
    torch.set_num_threads(wanted)
    try:
        config = dict(CELL_OPTIONS[cell_id])
        cell = config.pop("cell")
        torch.manual_seed(0)
        size_in = hidden if cell == "additive" else 30
        layer = Recurrent(cell, size_in, hidden, skip=skip, **config).double()
        layer.residual = True  # one layer: the loop path even for torch's configurations
        x = torch.randn(n_batch, length, size_in, dtype=torch.float64, requires_grad=True)
        lengths = torch.tensor([length, 4, 1, length, 2, 7, 8, 3] * ((n_batch + 7) // 8))[:n_batch]
        results = []
        for backend in (python_loop, module):
            monkeypatch.setattr(function, "_backend", lambda x, backend=backend: backend)
            out, final = layer(x, lengths=lengths)
            if backend is module:
                after("forward")
            loss = out.sum() + sum((s * s).sum() for s in final)
            results.append([out, *final, *torch.autograd.grad(loss, [x, *layer.parameters()])])
        after("backward")
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)
        with torch.inference_mode():  # the same loop without saving anything
            out, final = layer(x.detach(), lengths=lengths)
        after("inference")
        for a, b in zip([out, *final], results[0]):
            torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("split", ["auto", "rows", "units", "claimed"])
@pytest.mark.parametrize("n_batch, hidden", [(1, 300), (3, 100), (16, 40)], ids=["N1", "N3", "N16"])
@pytest.mark.parametrize("skip", [0, 1, 3])
@pytest.mark.parametrize("cell_id", CELL_IDS)
def test_two_threads_larger_shapes(cell_id, skip, n_batch, hidden, split, monkeypatch):
    """Shapes big enough for the extension to run its loop on two threads (rows or
    columns split between them, or a fused loop's batch rows or units, fixed or, without
    a backward, claimed step by step: RNNKIT_SPLIT) and its own register-blocked
    products: equal to the Python loops."""
    if split != "auto":
        monkeypatch.setenv("RNNKIT_SPLIT", split)
    check_two_threads(cell_id, skip, n_batch, hidden, 9, monkeypatch)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n_batch", [13, 32])
@pytest.mark.parametrize("cell_id", ["lstm-peephole", "lstm-cifg", "lstm-fgr", "gru-standard", "gru-original", "rnn-tanh"])
def test_batches_of_uneven_row_groups(cell_id, n_batch, threads, monkeypatch):
    """The register-blocked loops take a thread's rows in even groups (13 rows: 5 4 4,
    or 7 6 for three-gate cells; 32: 6 6 5 5 5 5): every group size is equal to the
    Python loops, on one thread and on two."""
    check_two_threads(cell_id, 0, n_batch, 40, 9, monkeypatch, threads=threads)


@pytest.mark.parametrize("skip", [0, 2])
@pytest.mark.parametrize("cell_id", ["lstm-peephole", "lstm-cifg", "lstm-fgr", "gru-standard", "gru-original", "rnn-tanh"])
def test_rows_taken_over_from_a_slow_thread_keep_the_results(cell_id, skip, monkeypatch):
    """With rows apart, a thread that has run all its steps takes rows over from a slower
    one (RNNKIT_SLOW_THREAD_US makes thread 1 slow here): rows change hands in the
    forward loop, the backward loop and the loop without a backward, and the results
    still equal the Python loops."""
    monkeypatch.setenv("RNNKIT_SPLIT", "rows")
    monkeypatch.setenv("RNNKIT_SLOW_THREAD_US", "2000")  # the Python loops ignore it
    handed = {}
    extension.available() and extension.rows_handed_over()
    check_two_threads(cell_id, skip, 32, 64, 12, monkeypatch,
                      after=lambda stage: handed.update({stage: extension.rows_handed_over()}))
    assert min(handed.values()) > 0, handed


@pytest.mark.parametrize("gemm", ["own", "torch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("cell_id", ["lstm-peephole", "lstm-fgr", "gru-standard", "gru-original", "rnn-relu"])
def test_either_kernel_of_the_large_products_matches_the_reference(cell_id, dtype, gemm, use_backend, monkeypatch):
    """The input projection and the gradient products, by the extension's own kernel or by torch.mm."""
    use_backend("cpp")
    monkeypatch.setitem(extension._state, "gemm", gemm)
    calls = []
    real_own = extension.own_mm
    monkeypatch.setattr(extension, "own_mm", lambda *a: calls.append(1) or real_own(*a))
    layer = build(cell_id, dtype, skip=2)
    x, state = inputs(layer, dtype)
    got = run_layer(layer, x, state, LENGTHS)
    assert bool(calls) == (gemm == "own")
    monkeypatch.setenv("RNNKIT_KERNEL", "loop")
    want = run_layer(layer, x, state, LENGTHS)
    atol, rtol = tolerance(dtype)
    for a, b in zip([got[0], *got[1], *got[2]], [want[0], *want[1], *want[2]]):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


def test_the_large_products_kernel_is_chosen_by_vendor_or_by_the_environment(monkeypatch):
    for vendor, env, want in (("GenuineIntel", "", "torch"), ("AuthenticAMD", "", "own"), ("", "", "own"),
                              ("AuthenticAMD", "torch", "torch"), ("GenuineIntel", "own", "own"),
                              ("GenuineIntel", "mkl", "torch")):
        monkeypatch.setitem(extension._state, "gemm", None)
        monkeypatch.setattr(extension, "_cpu_vendor", lambda: vendor)
        monkeypatch.setenv("RNNKIT_GEMM", env)
        assert extension.large_products() == want, (vendor, env)
    assert extension.large_products() == "torch"  # fixed once chosen
    monkeypatch.setenv("RNNKIT_GEMM", "own")
    assert extension.large_products() == "torch"


@pytest.mark.parametrize("cell_id", ["lstm-peephole", "gru-original", "rnn-relu"])
def test_inference_mode(cell_id, monkeypatch):
    """Under torch.inference_mode the kernels save nothing and give the same outputs."""
    layer = build(cell_id, torch.float64, skip=1)
    x = torch.randn(N, L, layer.input_size, dtype=torch.float64)
    with torch.inference_mode():
        out, final = layer(x, lengths=LENGTHS)
    monkeypatch.setenv("RNNKIT_KERNEL", "loop")
    with torch.no_grad():
        ref_out, ref_final = layer(x, lengths=LENGTHS)
    torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=1e-10)
    for a, b in zip(final, ref_final):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def reference_outputs(layer, x, monkeypatch):
    monkeypatch.setenv("RNNKIT_KERNEL", "loop")
    with torch.no_grad():
        out, final = layer(x, lengths=LENGTHS)
    monkeypatch.delenv("RNNKIT_KERNEL")
    return out, final


@pytest.mark.parametrize("skip", [0, 2])
@pytest.mark.parametrize("cell_id", ["lstm-peephole", "lstm-fgr", "gru-standard", "rnn-relu"])
def test_packed_weights_are_kept_between_calls_until_the_weights_change(cell_id, skip, use_backend, monkeypatch):
    """Without a backward the extension keeps each weight's packed form: a second call
    reuses it and gives the same outputs; an in-place change of a weight (an optimizer
    step, load_state_dict) must be seen at once, never the stale pack."""
    use_backend("cpp")
    extension.pack_cache_entries(clear=True)
    layer = build(cell_id, torch.float32, skip=skip)
    x = torch.randn(N, L, layer.input_size)
    with torch.inference_mode():
        first = layer(x, lengths=LENGTHS)
    kept = extension.pack_cache_entries()
    # the recurrent weights; LSTM and Elman run the input and skip products inside the step
    fused_inputs = not cell_id.startswith("gru")
    assert kept == 1 + fused_inputs * (1 + (skip > 0))
    with torch.no_grad():
        second = layer(x, lengths=LENGTHS)
    assert extension.pack_cache_entries() == kept
    torch.testing.assert_close(second, first, rtol=0, atol=0)

    with torch.no_grad():  # what an optimizer step does
        for p in layer.parameters():
            p.mul_(-0.7).add_(0.05)
    with torch.inference_mode():
        stepped = layer(x, lengths=LENGTHS)
    expected = reference_outputs(layer, x, monkeypatch)
    torch.testing.assert_close(stepped, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(stepped[0], first[0])

    for p in layer.parameters():  # writes through .data leave the version counter alone
        p.data.mul_(0.5)
    with torch.inference_mode():
        halved = layer(x, lengths=LENGTHS)
    torch.testing.assert_close(halved, reference_outputs(layer, x, monkeypatch), atol=1e-5, rtol=1e-5)

    other = build(cell_id, torch.float32, seed=7, skip=skip)
    layer.load_state_dict(other.state_dict())
    with torch.inference_mode():
        loaded = layer(x, lengths=LENGTHS)
    torch.testing.assert_close(loaded, reference_outputs(other, x, monkeypatch), atol=1e-5, rtol=1e-5)
    assert extension.pack_cache_entries() == kept  # the older versions were replaced


def test_packed_weights_of_a_freed_layer_are_dropped(use_backend, monkeypatch):
    """A freed weight's entry goes, so that a new tensor at the same address never meets it."""
    use_backend("cpp")
    extension.pack_cache_entries(clear=True)
    x = torch.randn(N, L, D)
    for seed in range(4):
        layer = build("lstm-peephole", torch.float32, seed=seed)
        with torch.no_grad():
            out = layer(x, lengths=LENGTHS)
        torch.testing.assert_close(out, reference_outputs(layer, x, monkeypatch), atol=1e-5, rtol=1e-5)
        assert extension.pack_cache_entries() == 2  # this layer's recurrent and input weights
        del layer, out
    assert extension.pack_cache_entries() == 0


def test_packed_weights_are_not_kept_when_training_or_when_switched_off():
    """A graph being built means the weights are about to change: nothing is kept. With
    RNNKIT_PACK_CACHE_MB=0 nothing is kept at all (a fresh process: read once)."""
    backend_module("cpp")
    script = textwrap.dedent("""
        import torch
        from rnnkit.layers import Recurrent
        from rnnkit.layers.kernels import extension
        layer = Recurrent("lstm", 4, 5, variant="peephole")
        x = torch.randn(3, 7, 4)
        out, _ = layer(x)
        out.sum().backward()
        print("training", extension.pack_cache_entries())
        with torch.no_grad():
            layer(x)
        print("inference", extension.pack_cache_entries())
    """)
    for budget, expected in (("", "training 0\ninference 2"), ("0", "training 0\ninference 0")):
        env = {**os.environ, "RNNKIT_PACK_CACHE_MB": budget}
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                                timeout=300)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected


def big_layer(cell_id, seed=0):
    """Buffers of a few MB: large enough for the workspace (1 MB and up)."""
    config = dict(CELL_OPTIONS[cell_id])
    torch.manual_seed(seed)
    return Recurrent(config.pop("cell"), 32, 256, **config)


@pytest.mark.parametrize("cell_id", ["lstm-peephole", "gru-standard", "gru-original", "rnn-relu"])
def test_workspace_buffers_are_reused_only_once_free(cell_id, use_backend):
    """Training steps of one shape reuse the same buffers (the workspace stops growing)
    and give the same gradients each time; a buffer still referenced (an output the
    caller keeps, a graph not yet run backward) is never handed out again."""
    use_backend("cpp")
    layer = big_layer(cell_id)
    x = torch.randn(16, 96, 32, requires_grad=True)
    y = torch.randn(16, 96, 32, requires_grad=True)

    def grads(inp):
        layer.zero_grad(set_to_none=True)
        inp.grad = None
        out, _ = layer(inp)
        (out * out).sum().backward()
        return [inp.grad.clone(), *(p.grad.clone() for p in layer.parameters())]

    first = grads(x)
    held = extension.workspace_bytes()
    assert held > 0
    for _ in range(3):
        again = grads(x)
        assert extension.workspace_bytes() == held
        for a, b in zip(first, again):
            assert torch.equal(a, b)

    with torch.no_grad():  # outputs kept by the caller stay intact through later calls
        out_x, _ = layer(x)
        kept = out_x.clone()
        layer(y)
        layer(x + 1)
    assert torch.equal(out_x, kept)

    x.grad = y.grad = None  # two graphs alive at once, run backward in the other order
    out_x, _ = layer(x)
    out_y, _ = layer(y)
    (out_y * out_y).sum().backward()
    layer(x.detach() * 2)[0].sum().backward()  # a third step in between, same shapes
    (out_x * out_x).sum().backward()
    torch.testing.assert_close(x.grad, first[0], rtol=1e-5, atol=1e-6)


def test_workspace_lets_go_of_a_shape_that_stopped_coming(use_backend):
    """An idle buffer nobody asked for within 256 requests is released."""
    use_backend("cpp")
    layer = big_layer("rnn-relu")
    extension.workspace_bytes(release=True)
    with torch.no_grad():
        layer(torch.randn(32, 96, 32))  # the output buffer: (1 + 96, 32, 256) floats
        assert extension.workspace_bytes() == 97 * 32 * 256 * 4
        x = torch.randn(16, 96, 32)
        for _ in range(100):
            layer(x)
        assert extension.workspace_bytes() == 97 * (32 + 16) * 256 * 4
        for _ in range(200):
            layer(x)
    assert extension.workspace_bytes() == 97 * 16 * 256 * 4


def test_workspace_never_reuses_memory_moved_to_shared_memory(use_backend):
    """torch.multiprocessing moves a tensor sent to another process into shared memory
    (share_memory_): that process may still read it after this one lets go, so the
    buffer must leave the workspace rather than be handed out again."""
    use_backend("cpp")
    layer = big_layer("rnn-relu")
    extension.workspace_bytes(release=True)
    x = torch.randn(16, 96, 32)
    with torch.no_grad():
        out, _ = layer(x)
        expected = out.clone()
        out.share_memory_()
        shared = out.data_ptr()
        assert extension.workspace_bytes() == 97 * 16 * 256 * 4
        del out
        again, _ = layer(x)
    assert again.data_ptr() != shared
    torch.testing.assert_close(again, expected)
    assert extension.workspace_bytes() == 97 * 16 * 256 * 4  # the new buffer only


def test_workspace_releases_idle_buffers_and_can_be_switched_off(use_backend):
    use_backend("cpp")
    layer = big_layer("gru-standard")
    x = torch.randn(16, 96, 32)
    with torch.no_grad():
        out, _ = layer(x)
    assert extension.workspace_bytes() > 0
    extension.workspace_bytes(release=True)
    in_use = extension.workspace_bytes()
    assert in_use >= out.numel() * 4  # the output's buffer stays: it is still used
    del out
    assert extension.workspace_bytes(release=True) == 0
    script = textwrap.dedent("""
        import torch
        from rnnkit.layers import Recurrent
        from rnnkit.layers.kernels import extension
        layer = Recurrent("gru", 32, 256)
        out, _ = layer(torch.randn(16, 96, 32))
        out.sum().backward()
        print(extension.workspace_bytes())
    """)
    env = {**os.environ, "RNNKIT_WORKSPACE_MB": "0"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell_id", ["lstm-peephole", "gru-standard", "rnn-tanh"])
def test_the_loop_saves_for_backward_only_when_a_graph_is_built(cell_id, backend, use_backend, monkeypatch):
    """Parameters keep requires_grad under no_grad and inference_mode; the loop must still
    not store its (L, N, G·H) activations there, and must store them when training."""
    use_backend(backend)
    module = backend_module(backend)
    layer = build(cell_id, torch.float32)
    x = torch.randn(N, L, layer.input_size)
    saves = []
    real = module.forward
    monkeypatch.setattr(module, "forward", lambda *a, **k: saves.append(a[11]) or real(*a, **k))
    with torch.inference_mode():
        layer(x, lengths=LENGTHS)
    with torch.no_grad():
        layer(x, lengths=LENGTHS)
    assert saves == [False, False]
    out, _ = layer(x, lengths=LENGTHS)
    assert saves[-1] is True and out.requires_grad


@pytest.mark.parametrize("which", [0, 1], ids=["sigmoid", "tanh"])
def test_the_extensions_float_activations_are_within_a_few_ulp(which):
    """The gate math's own sigmoid (a polynomial exp) and tanh (a rational function)
    against float64 torch, over the whole range a gate sees, near zero and at infinity."""
    backend_module("cpp")
    x = torch.cat([torch.linspace(-100, 100, 400_001), torch.linspace(-1, 1, 100_001),
                   torch.linspace(-1e-3, 1e-3, 100_001),
                   torch.tensor([0.0, -0.0, 1e-30, -1e-30, 88.5, -88.5, 1e4, -1e4, float("inf"), -float("inf")])])
    got = torch.ops.rnnkit_recurrence.activation(x, which).double()
    want = torch.sigmoid(x.double()) if which == 0 else torch.tanh(x.double())
    ulp = torch.finfo(torch.float32).eps * want.abs().clamp_min(torch.finfo(torch.float32).tiny)
    assert ((got - want).abs() <= 4 * ulp + 1e-38).all(), float(((got - want).abs() / ulp).max())
    assert torch.ops.rnnkit_recurrence.activation(torch.full((40,), float("nan")), which).isnan().all()


def test_unknown_cells_take_the_loop():
    """A cell the kernels do not describe (a user's own) runs Recurrent's own loop."""
    from rnnkit.cells import ElmanCell

    class Doubling(ElmanCell):
        def step(self, xp_t, state):
            return (2 * super().step(xp_t, state)[0],)

    assert kernels.describe(Doubling(D, H), 0, None) is None


# ---- without the extension ------------------------------------------------------------

CHECK = textwrap.dedent("""
    import logging, torch
    logging.basicConfig(level=logging.WARNING)
    from rnnkit import Recurrent
    from rnnkit.layers.kernels import extension
    layer = Recurrent("lstm", 3, 4, variant="peephole").double()
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    out, _ = layer(x)
    out.sum().backward()
    out2, _ = layer(x)  # a second call: no second attempt, no second message
    print("available", extension.available(), "grad", bool(torch.isfinite(x.grad).all()))
""")


def run_fresh(env_extra):
    env = {**os.environ, **env_extra}
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def test_disabled_extension_falls_back_quietly():
    result = run_fresh({"RNNKIT_NO_EXTENSION": "1"})
    assert "available False grad True" in result.stdout
    assert "could not be built" not in result.stderr


def test_failed_build_falls_back_and_says_so_once(tmp_path):
    """No usable compiler: one warning in the log, then the Python loops."""
    env = {"RNNKIT_NO_EXTENSION": "", "RNNKIT_EXTENSION_DIR": str(tmp_path), "CXX": str(tmp_path / "no-such-c++")}
    result = run_fresh(env)
    assert "available False grad True" in result.stdout
    assert result.stderr.count("could not be built") == 1
