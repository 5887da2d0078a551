"""The oracle: plain reference loops for rnnkit's cells and `Recurrent`.

Written directly from the equations in docs/core.md, for readability, not speed.
Nothing here imports rnnkit's step or loop code: the reference only reads a cell's
parameters by their documented names (`weight_ih`, `weight_hh`, `bias_ih`,
`bias_hh`, `weight_peep_i/f/o`, `weight_gate_hh`) and a layer's documented
attributes (`cells`, `skip_weights`, `residual_proj`). It computes every input
product itself from the raw input, one step at a time, one sequence at a time.

Shapes: N batch, L length, D input size, H hidden size, G gate blocks.
Eval mode only (no dropout).
"""
import torch

# Every cell and variant the core offers: (test id, constructor options).
CELLS = [
    ("rnn-tanh", {"cell": "rnn", "nonlinearity": "tanh"}),
    ("rnn-relu", {"cell": "rnn", "nonlinearity": "relu"}),
    ("irnn", {"cell": "irnn"}),
    ("additive", {"cell": "additive"}),
    *[
        (f"lstm-{variant}", {"cell": "lstm", "variant": variant})
        for variant in ("standard", "peephole", "nig", "nfg", "nog",
                        "niaf", "noaf", "np", "cifg", "fgr")
    ],
    ("gru-standard", {"cell": "gru", "variant": "standard"}),
    ("gru-original", {"cell": "gru", "variant": "original"}),
]
CELL_IDS = [name for name, _ in CELLS]
CELL_OPTIONS = dict(CELLS)

# LSTM variants: which of the gate blocks i, f, g, o exist (in weight order), and
# which peephole vectors. Each Greff variant changes `peephole` in one place.
LSTM_GATES = {
    "standard": "ifgo", "np": "ifgo",
    "peephole": "ifgo", "niaf": "ifgo", "noaf": "ifgo", "fgr": "ifgo",
    "nig": "fgo", "nfg": "igo", "cifg": "igo", "nog": "ifg",
}
LSTM_PEEPHOLES = {
    "standard": "", "np": "",
    "peephole": "ifo", "niaf": "ifo", "noaf": "ifo", "fgr": "ifo",
    "nig": "fo", "nfg": "io", "cifg": "io", "nog": "if",
}

LAYER_DEFAULTS = {
    "num_layers": 1, "bidirectional": False, "residual": False, "skip": 0,
    "dropout": 0.0, "variational": False, "batch_first": True,
}


def cell_kind(cell="lstm", variant="standard", nonlinearity="tanh", **_ignored):
    """The (name, variant, nonlinearity) triple that picks the equations."""
    if cell == "irnn":
        return ("rnn", None, "relu")
    if cell == "rnn":
        return ("rnn", None, nonlinearity)
    if cell == "additive":
        return ("additive", None, None)
    return (cell, variant, None)


def num_gates(kind):
    """G, the number of gate blocks in the weights."""
    name, variant, _ = kind
    if name == "lstm":
        return len(LSTM_GATES[variant])
    return {"rnn": 1, "additive": 0, "gru": 3}[name]


def state_names(kind):
    """The cell's state entries in order."""
    name, variant, _ = kind
    if name == "lstm":
        return ("h", "c", "i", "f", "o") if variant == "fgr" else ("h", "c")
    return ("h",)


def split_blocks(t, names, hidden_size):
    """t (..., G·H) -> {gate name: (..., H)} in the documented block order."""
    return {g: t[..., k * hidden_size:(k + 1) * hidden_size] for k, g in enumerate(names)}


def linear(x, weight, bias=None):
    """x @ weight.T + bias, written out."""
    y = x @ weight.t()
    return y if bias is None else y + bias


def reference_cell_step(cell, x_t, state, kind, skip_term=None):
    """One step of a cell from the raw input, per the equations in docs/core.md.

    cell: the cell (only its documented parameters are read); x_t: (N, D);
    state: tuple of (N, H) in the cell's `state_names` order; kind: `cell_kind(...)`;
    skip_term: (N, G·H) added to the input part of the pre-activations, or None.
    Returns the new state tuple.
    """
    name, variant, nonlinearity = kind
    h = state[0]
    hidden_size = h.shape[-1]

    if name == "additive":  # h_t = h_{t-1} + x_t
        x = x_t
        if skip_term is not None and skip_term.shape[-1] == hidden_size:
            x = x + skip_term
        return (h + x,)

    x = linear(x_t, cell.weight_ih, cell.bias_ih)  # (N, G·H)
    if skip_term is not None:
        x = x + skip_term

    if name == "rnn":  # h_t = act(x + r)
        pre = x + linear(h, cell.weight_hh, cell.bias_hh)
        return (torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre),)

    if name == "gru":
        xs = split_blocks(x, "rzn", hidden_size)
        w_hh = split_blocks(cell.weight_hh.t(), "rzn", hidden_size)  # each (H, H) transposed
        b_hh = split_blocks(cell.bias_hh, "rzn", hidden_size)
        r = torch.sigmoid(xs["r"] + h @ w_hh["r"] + b_hh["r"])
        z = torch.sigmoid(xs["z"] + h @ w_hh["z"] + b_hh["z"])
        if variant == "standard":  # reset after the recurrent product (torch.nn.GRU)
            n = torch.tanh(xs["n"] + r * (h @ w_hh["n"] + b_hh["n"]))
        elif variant == "original":  # Cho et al. 2014: reset before the product
            n = torch.tanh(xs["n"] + (r * h) @ w_hh["n"] + b_hh["n"])
        else:
            raise ValueError(f"reference: unknown gru variant {variant}")
        return ((1 - z) * n + z * h,)

    if name != "lstm":
        raise ValueError(f"reference: unknown cell {name}")

    c_prev = state[1]
    gates = LSTM_GATES[variant]
    peepholes = LSTM_PEEPHOLES[variant]
    pre = split_blocks(x + linear(h, cell.weight_hh, cell.bias_hh), gates, hidden_size)
    if variant == "fgr":  # i, f, o also receive the previous step's gates
        previous = torch.cat([state[2], state[3], state[4]], dim=-1)  # (N, 3H)
        extra = split_blocks(linear(previous, cell.weight_gate_hh), "ifo", hidden_size)
        for g in "ifo":
            pre[g] = pre[g] + extra[g]
    if "i" in peepholes:
        pre["i"] = pre["i"] + cell.weight_peep_i * c_prev
    if "f" in peepholes:
        pre["f"] = pre["f"] + cell.weight_peep_f * c_prev

    one = torch.ones_like(c_prev)
    i = torch.sigmoid(pre["i"]) if "i" in gates else one
    if "f" in gates:
        f = torch.sigmoid(pre["f"])
    elif variant == "cifg":
        f = 1 - i
    else:
        f = one
    g = pre["g"] if variant == "niaf" else torch.tanh(pre["g"])
    c = f * c_prev + i * g
    if "o" in gates:
        pre_o = pre["o"] + cell.weight_peep_o * c if "o" in peepholes else pre["o"]
        o = torch.sigmoid(pre_o)
    else:
        o = one
    h = o * c if variant == "noaf" else o * torch.tanh(c)
    if variant == "fgr":
        return (h, c, i, f, o)
    return (h, c)


def reference_cell_sequence(cell, x, state, kind, history=(), skip_weight=None):
    """Run one cell over one sequence, forwards in time.

    x: (N, T, D); state: tuple of (N, H); history: the d − 1 older hidden states
    h_{t−d}, …, h_{t−2} (oldest first) when skip = d > 1; skip_weight: (G·H, H) or None.
    Returns (outputs (N, T, H), final state tuple, final history tuple).
    """
    hist = list(history) + [state[0]]  # h_{t-d}, ..., h_{t-1}
    outputs = []
    for t in range(x.shape[1]):
        skip_term = None
        if skip_weight is not None and skip_weight.shape[0] > 0:
            skip_term = linear(hist[0], skip_weight)  # weight_skip @ h_{t-d}
        state = reference_cell_step(cell, x[:, t], state, kind, skip_term)
        hist = hist[1:] + [state[0]]
        outputs.append(state[0])
    return torch.stack(outputs, dim=1), state, tuple(hist[:-1])


def _residual_input(layer, layer_index, inp, out_size):
    """The residual branch of a layer above the first: its input, projected if sizes differ."""
    if inp.shape[-1] == out_size:
        return inp
    projections = layer.residual_proj
    # residual_proj holds one entry per layer or per layer above the first.
    proj = projections[layer_index] if len(projections) > layer_index else projections[layer_index - 1]
    return proj(inp)


def _run_stack(layer, x, state, config):
    """Run the whole stack on one unpadded sequence. x (1, T, D); state entries (layers·dirs, 1, H)."""
    kind = cell_kind(**config)
    n_cell = len(state_names(kind))
    dirs = 2 if config["bidirectional"] else 1
    skip = config["skip"]
    final = [[None] * (config["num_layers"] * dirs) for _ in state]
    inp = x
    for layer_index in range(config["num_layers"]):
        direction_outputs = []
        for direction in range(dirs):
            k = layer_index * dirs + direction
            seq = inp if direction == 0 else inp.flip(1)
            cell_state = tuple(s[k] for s in state[:n_cell])
            history = tuple(s[k] for s in state[n_cell:])
            skip_weight = layer.skip_weights[k] if skip > 0 else None
            out, cell_state, history = reference_cell_sequence(
                layer.cells[k], seq, cell_state, kind, history, skip_weight)
            direction_outputs.append(out if direction == 0 else out.flip(1))
            for e, value in enumerate(cell_state + history):
                final[e][k] = value
        out = torch.cat(direction_outputs, dim=-1)  # (1, T, dirs·H)
        if config["residual"] and layer_index > 0:
            out = out + _residual_input(layer, layer_index, inp, out.shape[-1])
        inp = out
    return inp, tuple(torch.stack(entries, dim=0) for entries in final)


def reference_recurrent(layer, x, state=None, lengths=None, **config):
    """Reference `Recurrent.forward`, one sequence at a time.

    layer: a `Recurrent` in eval mode; config: the keyword arguments it was built with
    (cell, input_size, hidden_size, num_layers, bidirectional, residual, skip,
    batch_first, cell options). x: (N, L, D), or (L, N, D) when batch_first=False;
    state: tuple of (layers·dirs, N, H) or None (zeros); lengths: (N,) or None.
    Returns (outputs (N, L, dirs·H) in x's layout, state tuple), outputs zero at
    padded steps, each final state taken at the sequence's own last real step.
    """
    config = {**LAYER_DEFAULTS, **config}
    if layer.training and config["dropout"] > 0:
        raise ValueError("reference: eval mode only (no dropout)")
    if not config["batch_first"]:
        x = x.transpose(0, 1)
    n_batch, length, _ = x.shape
    hidden_size = config["hidden_size"]
    dirs = 2 if config["bidirectional"] else 1
    kind = cell_kind(**config)
    n_entries = len(state_names(kind)) + max(config["skip"] - 1, 0)
    if state is None:
        zeros = x.new_zeros(config["num_layers"] * dirs, n_batch, hidden_size)
        state = tuple(zeros for _ in range(n_entries))
    assert len(state) == n_entries, "reference: state of the wrong count"
    if lengths is None:
        lengths = [length] * n_batch

    outputs, finals = [], []
    for n in range(n_batch):
        steps = int(lengths[n])
        out, final = _run_stack(layer, x[n:n + 1, :steps], tuple(s[:, n:n + 1] for s in state), config)
        padding = out.new_zeros(1, length - steps, out.shape[-1])
        outputs.append(torch.cat([out, padding], dim=1))
        finals.append(final)
    outputs = torch.cat(outputs, dim=0)  # (N, L, dirs·H)
    if not config["batch_first"]:
        outputs = outputs.transpose(0, 1)
    state = tuple(torch.cat([final[e] for final in finals], dim=1) for e in range(n_entries))
    return outputs, state


# ---- small helpers shared by the tests ----------------------------------------

def make_inputs(n_batch, length, input_size, dtype=torch.float32, seed=0):
    """A fixed random input (N, L, D)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n_batch, length, input_size, generator=generator).to(dtype)


def random_state(config, n_batch, dtype=torch.float32, seed=1):
    """A random initial state in the documented layout for a layer built with config."""
    config = {**LAYER_DEFAULTS, **config}
    kind = cell_kind(**config)
    dirs = 2 if config["bidirectional"] else 1
    n_entries = len(state_names(kind)) + max(config["skip"] - 1, 0)
    generator = torch.Generator().manual_seed(seed)
    shape = (config["num_layers"] * dirs, n_batch, config["hidden_size"])
    return tuple(0.5 * torch.randn(shape, generator=generator).to(dtype) for _ in range(n_entries))


def tolerance(dtype):
    """(atol, rtol) for comparing two computations of the same thing."""
    return (1e-10, 1e-10) if dtype == torch.float64 else (1e-5, 1e-5)
