"""`Recurrent`: runs any cell over time, stacked, bidirectional, residual, with skip
connections through time, dropout between layers and variable lengths.

Two paths compute the same function:
- fused: when the configuration is exactly a torch.nn.LSTM / GRU / RNN, torch's own
  kernel (oneDNN on CPU, cuDNN on GPU) runs with this module's parameters;
- loop: everything else. The input product for all steps is one matrix product
  before the loop (`Cell.project_input`); the loop holds the recurrent product and
  the gate math (`Cell.step`). `_run_direction` is the one place a faster kernel
  slots in.

While `rnnkit.inspect.record` has set `recorder` on a layer, forward runs the loop
path's reference loop and reports every step's state to the recorder (and the cells
report their gates), so what is recorded is what this forward pass computed.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..cells import make_cell
from . import kernels
from .dropout import dropout
from .kernels.denormals import flush_denormals, flushing

State = tuple[torch.Tensor, ...]

# torch.nn module class <-> (rnnkit cell name, cell options), for from_torch / to_torch.
_TORCH_KINDS = {
    "lstm": (nn.LSTM, "lstm", {}),
    "gru": (nn.GRU, "gru", {}),
    "rnn_tanh": (nn.RNN, "rnn", {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, "rnn", {"nonlinearity": "relu"}),
}


class Recurrent(nn.Module):
    """A recurrent layer stack over any rnnkit cell.

    Args:
        cell: cell name (`rnn`, `irnn`, `additive`, `lstm`, `gru`; see rnnkit.cells).
        input_size: D. hidden_size: H.
        num_layers: stacked layers. bidirectional: a second direction per layer,
            outputs concatenated (dirs·H features).
        residual: layers above the first add their input to their output.
        skip: d > 0 adds W_skip h_{t-d} to every step's gate pre-activations
            (connections between states d steps apart); 0 disables it.
        dropout: probability on the inputs of layers 2..num_layers (training only).
        variational: one dropout mask per sequence, reused at every step.
        batch_first: x is (N, L, D) when true, (L, N, D) when false.
        **cell_options: passed to the cell (`variant=`, `nonlinearity=`, `forget_bias=`,
            `recurrent_init=`).

    `forward(x, state=None, lengths=None) -> (outputs, state)`:
        x (N, L, D) or a PackedSequence; outputs (N, L, dirs·H) (a PackedSequence for
        packed input); state a tuple of (layers·dirs, N, H) tensors: the cell's
        `state_names`, then for skip d > 1 the older states h_{t-d} … h_{t-2}.
        lengths (N,) in 1..L: padded steps give zero outputs and leave the state alone.
    """

    recorder = None  # set only by rnnkit.inspect.record; None: nothing is recorded

    def __init__(self, cell: str = "lstm", input_size: int | None = None,
                 hidden_size: int | None = None, num_layers: int = 1,
                 bidirectional: bool = False, residual: bool = False, skip: int = 0,
                 dropout: float = 0.0, variational: bool = False, batch_first: bool = True,
                 **cell_options):
        super().__init__()
        if input_size is None or hidden_size is None:
            raise ValueError("Recurrent needs input_size and hidden_size")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if skip < 0:
            raise ValueError(f"skip must be >= 0 (0 disables it), got {skip}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.cell_name = cell
        self.cell_options = dict(cell_options)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.residual = residual
        self.skip = skip
        self.dropout = dropout
        self.variational = variational
        self.batch_first = batch_first

        cells = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.num_directions
            for _ in range(self.num_directions):
                cells.append(make_cell(cell, layer_input, hidden_size, **cell_options))
        self.cells = nn.ModuleList(cells)
        first = self.cells[0]
        self.state_names = tuple(first.state_names)
        self.num_cell_states = len(first.state_names)
        if skip:
            bound = 1.0 / math.sqrt(hidden_size)
            self.skip_weights = nn.ParameterList(
                nn.Parameter(torch.empty(c.projected_size, hidden_size).uniform_(-bound, bound))
                for c in self.cells
            )

    # -- what runs ------------------------------------------------------------------
    @property
    def uses_fused(self) -> bool:
        """True when torch's fused kernel computes exactly this configuration."""
        return (self.cells[0].torch_kind is not None and not self.skip and not self.residual
                and not (self.variational and self.dropout > 0))

    @property
    def num_states(self) -> int:
        """Number of tensors in the state tuple."""
        return self.num_cell_states + max(self.skip - 1, 0)

    @property
    def output_size(self) -> int:
        return self.hidden_size * self.num_directions

    def initial_state(self, batch_size: int, dtype=None, device=None) -> State:
        """Zeros: a tuple of `num_states` tensors (layers·dirs, N, H)."""
        shape = (self.num_layers * self.num_directions, batch_size, self.hidden_size)
        return tuple(torch.zeros(shape, dtype=dtype, device=device) for _ in range(self.num_states))

    # -- forward --------------------------------------------------------------------
    def forward(self, x, state: State | None = None, lengths=None):
        packed = isinstance(x, PackedSequence)
        if packed:
            if lengths is not None:
                raise ValueError("lengths must not be given with a PackedSequence (it carries its own)")
            x, lengths = pad_packed_sequence(x, batch_first=False)
        else:
            if not isinstance(x, torch.Tensor) or x.dim() != 3:
                shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                layout = "(N, L, D)" if self.batch_first else "(L, N, D)"
                raise ValueError(f"expected a 3-D input {layout}, got shape {shape}")
            if self.batch_first:
                x = x.transpose(0, 1)
        L, N, D = x.shape  # time-major from here on
        if D != self.input_size:
            raise ValueError(
                f"input feature size {D} does not match input_size={self.input_size} "
                f"(input shape {tuple(x.shape)})"
            )
        lengths = self._check_lengths(lengths, N, L)
        state = self._check_state(state, N, x)
        if self.recorder is not None:  # recording: the reference loop, every step reported
            self.recorder.begin(lengths, L, N)

        grad = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        if self.uses_fused and self.recorder is None and not kernels.replaces_fused(self.cells[0], x, lengths, grad):
            out, state = self._forward_fused(x, state, lengths)
        else:
            out, state = self._forward_loop(x, state, lengths)

        if packed:
            return pack_padded_sequence(out, lengths, enforce_sorted=False), state
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, state

    def _check_lengths(self, lengths, N: int, L: int):
        """Validate lengths; return a CPU int64 tensor, or None when every sequence is full."""
        if lengths is None:
            return None
        lengths = torch.as_tensor(lengths)
        if lengths.dim() != 1 or lengths.numel() != N:
            raise ValueError(f"lengths must have one entry per sequence: expected ({N},), "
                             f"got shape {tuple(lengths.shape)}")
        if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
            raise ValueError(f"lengths must be integers, got dtype {lengths.dtype}")
        lengths = lengths.to("cpu", torch.int64)
        if N and (lengths.min() < 1 or lengths.max() > L):
            raise ValueError(f"lengths must lie in 1..{L} (the padded length L), got min "
                             f"{int(lengths.min())}, max {int(lengths.max())}")
        if N == 0 or bool((lengths == L).all()):
            return None
        return lengths

    def _check_state(self, state, N: int, x: torch.Tensor) -> State:
        if state is None:
            return self.initial_state(N, dtype=x.dtype, device=x.device)
        if isinstance(state, torch.Tensor):
            state = (state,)
        state = tuple(state)
        expected = (self.num_layers * self.num_directions, N, self.hidden_size)
        names = self.state_names + tuple(f"h[t-{d}]" for d in range(self.skip, 1, -1))
        if len(state) != self.num_states:
            raise ValueError(f"state must be a tuple of {self.num_states} tensors {names}, "
                             f"got {len(state)}")
        for name, s in zip(names, state):
            if tuple(s.shape) != expected:
                raise ValueError(f"state tensor {name!r} must have shape "
                                 f"(layers*directions, N, H) = {expected}, got {tuple(s.shape)}")
        return state

    # -- fused path: torch's kernels with our parameters -----------------------------
    def _forward_fused(self, x, state: State, lengths):
        kind = self.cells[0].torch_kind
        run = {"lstm": torch.lstm, "gru": torch.gru,
               "rnn_tanh": torch.rnn_tanh, "rnn_relu": torch.rnn_relu}[kind]
        dirs = self.num_directions
        # torch's kernel drops out between its layers with its own CPU dropout, several
        # times slower than rnnkit's; so in training on CPU each layer is one call
        per_layer = (self.training and self.dropout > 0 and self.num_layers > 1
                     and x.device.type == "cpu")
        groups = [[k] for k in range(self.num_layers)] if per_layer else [list(range(self.num_layers))]
        cpu = x.device.type == "cpu"  # subnormals flushed there, as on the loop path (kernels.denormals)
        if lengths is not None:
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            order, unorder = packed.sorted_indices, packed.unsorted_indices
            data, batch_sizes = packed.data, packed.batch_sizes  # (ΣL, D), (L,)
            state = tuple(h.index_select(1, order) for h in state)
        else:
            data = x
        finals = []
        for layers in groups:
            lo, hi = layers[0] * dirs, (layers[-1] + 1) * dirs  # cells lo..hi-1, their state rows
            weights = [w for c in self.cells[lo:hi] for w in (c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh)]
            hx = tuple(h[lo:hi] for h in state)
            hx = hx if kind == "lstm" else hx[0]
            if per_layer and lo > 0:
                data = self._between_layers(data)
            args = (weights, True, len(layers), 0.0 if per_layer else self.dropout, self.training,
                    self.bidirectional)
            with flush_denormals(cpu):
                result = run(data, hx, *args, False) if lengths is None else run(data, batch_sizes, hx, *args)
            if cpu and result[0].requires_grad:
                _flush_in_backward(result, stop=[data, *hx] if kind == "lstm" else [data, hx])
            data = result[0]
            finals.append(result[1:])
        final = tuple(torch.cat(parts) for parts in zip(*finals)) if per_layer else finals[0]
        if lengths is None:
            return data, tuple(final)
        out = PackedSequence(data, batch_sizes, order, unorder)
        out, _ = pad_packed_sequence(out, total_length=x.shape[0])
        return out, tuple(h.index_select(1, unorder) for h in final)

    # -- loop path ------------------------------------------------------------------
    def _forward_loop(self, x, state: State, lengths):
        L, N, _ = x.shape
        mask = None
        if lengths is not None:
            lengths = lengths.to(x.device)
            mask = (torch.arange(L, device=x.device)[:, None] < lengths[None, :]).unsqueeze(-1)  # (L, N, 1)
        dirs = self.num_directions
        finals: list[list[torch.Tensor]] = [[] for _ in range(self.num_states)]
        layer_input = x
        for layer in range(self.num_layers):
            inp = self._between_layers(layer_input) if layer > 0 else layer_input
            outs = []
            for direction in range(dirs):
                k = layer * dirs + direction
                seq = inp if direction == 0 else _reverse(inp, lengths)
                out, final = self._run_direction(k, seq, tuple(s[k] for s in state), mask)
                outs.append(out if direction == 0 else _reverse(out, lengths))
                for slot, s in zip(finals, final):
                    slot.append(s)
            out = outs[0] if dirs == 1 else torch.cat(outs, dim=-1)  # (L, N, dirs·H)
            if self.residual and layer > 0:
                out = out + layer_input
            layer_input = out
        return layer_input, tuple(torch.stack(slot) for slot in finals)

    def _between_layers(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout on the input of a layer above the first (training only)."""
        if not self.training or self.dropout == 0:
            return x
        if self.variational:  # one mask per sequence, the same at every step
            keep = x.new_empty(1, *x.shape[1:]).bernoulli_(1 - self.dropout) / (1 - self.dropout)
            return x * keep
        return dropout(x, self.dropout)

    def _run_direction(self, k: int, x, state: State, mask):
        """Run cell k over x (L, N, D_k) from `state`; returns outputs (L, N, H) and final state."""
        # the fast loops (layers/kernels); this loop is their reference (and what records)
        if kernels.enabled() and self.recorder is None:
            fast = kernels.run_direction(self.cells[k], x, state, mask, self.num_cell_states,
                                         self.skip, self.skip_weights[k] if self.skip else None)
            if fast is not None:
                return fast
        cell = self.cells[k]
        n = self.num_cell_states
        cell_state, history = state[:n], state[n:]
        steps = cell.project_input(x).unbind(0)  # L × (N, G·H); unbind, not x[t]: O(L) backward
        outputs = []
        for t, xp_t in enumerate(steps):
            new_state, new_history = self._cell_step(k, xp_t, cell_state, history)
            if mask is not None:  # padded steps leave the state as it was
                m = mask[t]
                new_state = tuple(torch.where(m, a, b) for a, b in zip(new_state, cell_state))
                new_history = tuple(torch.where(m, a, b) for a, b in zip(new_history, history))
            cell_state, history = new_state, new_history
            outputs.append(cell_state[0])
            if self.recorder is not None:
                self.recorder.step(k, t, cell_state)
        out = torch.stack(outputs)  # (L, N, H)
        if mask is not None:
            out = out.masked_fill(~mask, 0.0)
        return out, cell_state + history

    def _cell_step(self, k: int, xp_t, cell_state: State, history: State):
        """One step of cell k with the skip connection; history holds h_{t-d} … h_{t-2}."""
        if self.skip:
            h_old = history[0] if history else cell_state[0]  # h_{t-d}
            xp_t = torch.addmm(xp_t, h_old, self.skip_weights[k].t())
            history = history[1:] + (cell_state[0],) if history else history
        return self.cells[k].step(xp_t, cell_state), history

    # -- one step of the whole stack (generation, streaming) --------------------------
    def step(self, x_t: torch.Tensor, state: State | None = None):
        """One time step through every layer (unidirectional only).

        x_t (N, D) -> (output_t (N, H), state), equal to `forward` on a length-one input.
        """
        if self.bidirectional:
            raise ValueError("step() runs one time step forward; a bidirectional layer needs "
                             "the whole sequence, use forward()")
        if x_t.dim() != 2:
            raise ValueError(f"step expects a 2-D input x_t (N, D), got shape {tuple(x_t.shape)}")
        if x_t.shape[1] != self.input_size:
            raise ValueError(f"input feature size {x_t.shape[1]} does not match "
                             f"input_size={self.input_size} (step input shape {tuple(x_t.shape)})")
        state = self._check_state(state, x_t.shape[0], x_t)
        # On CPU, torch's fused kernel pays oneDNN's per-call setup on every step: for a
        # 2x512 LSTM at batch 1 it took 4-8x as long as the cells' own products, so one
        # step runs the cells directly. On GPU the fused kernel is the fast one.
        if self.uses_fused and x_t.device.type != "cpu":
            out, state = self._forward_fused(x_t.unsqueeze(0), state, None)
            return out[0], state
        n = self.num_cell_states
        finals: list[list[torch.Tensor]] = [[] for _ in range(self.num_states)]
        inp = x_t
        for layer in range(self.num_layers):
            layer_in = self._between_layers(inp.unsqueeze(0))[0] if layer > 0 else inp
            per_layer = tuple(s[layer] for s in state)
            xp_t = self.cells[layer].project_input(layer_in)
            new_state, history = self._cell_step(layer, xp_t, per_layer[:n], per_layer[n:])
            for slot, s in zip(finals, new_state + history):
                slot.append(s)
            out = new_state[0]
            if self.residual and layer > 0:
                out = out + inp
            inp = out
        return inp, tuple(torch.stack(slot) for slot in finals)

    # -- conversion to and from torch.nn ----------------------------------------------
    @classmethod
    def from_torch(cls, module: nn.Module) -> "Recurrent":
        """A Recurrent with the same configuration and weights as a torch.nn.LSTM/GRU/RNN.

        Gate orders are torch's and ours alike: LSTM i, f, g, o; GRU r, z, n.
        """
        if isinstance(module, nn.LSTM):
            if module.proj_size:
                raise ValueError("torch.nn.LSTM with proj_size > 0 has no rnnkit equivalent")
            cell, options = "lstm", {}
        elif isinstance(module, nn.GRU):
            cell, options = "gru", {}
        elif isinstance(module, nn.RNN):
            cell, options = "rnn", {"nonlinearity": module.nonlinearity}
        else:
            raise ValueError(f"from_torch expects torch.nn.LSTM, GRU or RNN, got {type(module).__name__}")
        if not module.bias:
            raise ValueError("from_torch needs a torch module with bias=True")
        ref = module.weight_ih_l0
        layer = cls(cell, module.input_size, module.hidden_size, num_layers=module.num_layers,
                    bidirectional=module.bidirectional, dropout=module.dropout,
                    batch_first=module.batch_first, **options).to(device=ref.device, dtype=ref.dtype)
        layer._copy_weights(module, to_torch=False)
        return layer

    def to_torch(self) -> nn.Module:
        """The equivalent torch.nn.LSTM/GRU/RNN with a copy of these weights."""
        if not self.uses_fused:
            raise ValueError(f"this configuration (cell {self.cell_name!r}, options "
                             f"{self.cell_options}, skip={self.skip}, residual={self.residual}, "
                             f"variational={self.variational}) has no torch.nn equivalent")
        kind = self.cells[0].torch_kind
        module_class, _, options = _TORCH_KINDS[kind]
        ref = self.cells[0].weight_ih
        module = module_class(self.input_size, self.hidden_size, num_layers=self.num_layers,
                              bidirectional=self.bidirectional, dropout=self.dropout,
                              batch_first=self.batch_first, **options)
        module = module.to(device=ref.device, dtype=ref.dtype)
        self._copy_weights(module, to_torch=True)
        return module

    def _copy_weights(self, module: nn.Module, to_torch: bool) -> None:
        with torch.no_grad():
            for k, cell in enumerate(self.cells):
                layer, direction = divmod(k, self.num_directions)
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    ours, theirs = getattr(cell, name), getattr(module, name + suffix)
                    (theirs if to_torch else ours).copy_(ours if to_torch else theirs)

    def extra_repr(self) -> str:
        parts = [repr(self.cell_name), f"{self.input_size}, {self.hidden_size}",
                 f"num_layers={self.num_layers}"]
        for name in ("bidirectional", "residual", "variational"):
            if getattr(self, name):
                parts.append(f"{name}=True")
        if self.skip:
            parts.append(f"skip={self.skip}")
        if self.dropout:
            parts.append(f"dropout={self.dropout}")
        parts += [f"{k}={v!r}" for k, v in self.cell_options.items()]
        return ", ".join(parts)


def _reverse(x: torch.Tensor, lengths) -> torch.Tensor:
    """Reverse each sequence of x (L, N, F) within its own length; padding stays in place."""
    if lengths is None:
        return x.flip(0)
    L = x.shape[0]
    t = torch.arange(L, device=x.device)[:, None]
    index = torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)  # (L, N)
    return x.gather(0, index.unsqueeze(-1).expand_as(x))


# torch's fused CPU kernels whose backward reads long chains of small gradients
_FUSED_BACKWARD_NODES = ("MkldnnRnnLayerBackward",)


def _flush_in_backward(outputs, stop, budget: int = 256) -> None:
    """Make the backward of torch's fused CPU recurrence (oneDNN's LSTM layers, between
    `outputs` and the tensors in `stop`) run with subnormals flushed, as its forward
    does: a hook before each such node turns flushing on for the thread that runs it,
    one after restores the thread's previous mode. The walk visits at most `budget`
    nodes and hooks nothing where the kernel is not there (other builds decompose it)."""
    stop_nodes = {t.grad_fn for t in stop if isinstance(t, torch.Tensor) and t.grad_fn is not None}
    todo = [t.grad_fn for t in outputs if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    seen = set()
    while todo and budget > 0:
        node = todo.pop()
        if node is None or node in seen or node in stop_nodes:
            continue
        seen.add(node)
        budget -= 1
        if node.name().startswith(_FUSED_BACKWARD_NODES):
            before: list[bool] = []

            def pre(grad_outputs, before=before):
                before.append(flushing())
                torch.set_flush_denormal(True)

            def post(grad_inputs, grad_outputs, before=before):
                torch.set_flush_denormal(before.pop())

            node.register_prehook(pre)
            node.register_hook(post)
        todo.extend(n for n, _ in node.next_functions if n is not None)
