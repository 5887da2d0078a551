"""The autograd Function around the recurrence loops, and `run_direction`, the entry
point `Recurrent._run_direction` calls.

Forward: the input product for all steps is one GEMM before the loop (`Projection`,
or `Cell.project_input` for the Python loops), or, for LSTM and Elman cells in the
extension, part of each step's own product (then the (L, N, G·H) projection is never
stored); the loop runs the recurrent product and the gate math per step and saves the
gate activations. Backward: the loop runs in reverse doing only the recurrent product
(dpre_t @ W_hh) and the elementwise derivatives per step; the gradients of the input,
W_ih, W_hh, W_skip, FGR's gate matrix and the peepholes are then single large
products over all L·N rows (as cuDNN and haste do), in `weight_grads` and
`input_grads`. Double backward is not supported (RNNKIT_KERNEL=loop runs the
reference loop, which supports it). On a CPU both directions run with subnormals
flushed to zero (`denormals.flush_denormals`: a long backward otherwise crawls
through them).
"""
from __future__ import annotations

import contextlib

import torch
from torch.autograd.function import once_differentiable

from . import extension, python_loop
from .denormals import flush_denormals
from .spec import PEEP_F, PEEP_I, PEEP_O, describe


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.shape[-1])


def weight_grads(spec, needs, dxp, extra, hbuf, cs, gs, acts, mm=torch.mm):
    """Gradients of (weight_hh, bias_rec, weight_skip, peep, weight_gate) from the
    per-step gradients dxp (L, N, G·H) (zero at padded steps) and the saved buffers.
    `needs`: which of the five are wanted (others come back None). mm: the backend's
    matrix product."""
    H, d, kind = spec.hidden_size, spec.skip, spec.kind
    off = max(d - 1, 0)
    L = dxp.shape[0]
    hprev = _flat(hbuf[off:off + L])  # (L·N, H): h_{t-1} of every step
    dflat = _flat(dxp)  # (L·N, G·H)
    d_hh = d_bias = d_skip = d_peep = d_gate = None
    if needs[0]:
        if kind == "gru":  # rows r, z from dxp; rows n from the gradient of W_nh h + b_nh
            d_hh = torch.cat([mm(dflat[:, :2 * H].t(), hprev), mm(_flat(extra).t(), hprev)])
        elif kind == "gru_original":  # n rows multiply r ⊙ h_{t-1}
            rh = acts[..., :H] * hbuf[off:off + L]  # (L, N, H), zero past each length
            d_hh = torch.cat([mm(dflat[:, :2 * H].t(), hprev), mm(dflat[:, 2 * H:].t(), _flat(rh))])
        else:
            d_hh = mm(dflat.t(), hprev)  # (G·H, H)
    if needs[1]:
        d_bias = extra.sum((0, 1))
    if needs[2]:
        d_skip = mm(dflat.t(), _flat(hbuf[off + 1 - d:off + 1 - d + L]))  # h_{t-d} of every step
    if needs[3]:
        rows = []
        for gate, bit, c in (("i", PEEP_I, cs[:-1]), ("f", PEEP_F, cs[:-1]), ("o", PEEP_O, cs[1:])):
            if spec.flags & bit:
                b = spec.block(gate)
                rows.append((dxp[..., b * H:(b + 1) * H] * c).sum((0, 1)))
            else:
                rows.append(dxp.new_zeros(H))
        d_peep = torch.stack(rows)  # (3, H)
    if needs[4]:
        d_gate = mm(dflat.t(), _flat(gs[:-1]))  # (4H, 3H)
    return d_hh, d_bias, d_skip, d_peep, d_gate


class Projection(torch.autograd.Function):
    """xp = x · W^T + bias for all steps at once, forward and backward through the
    backend's matrix product (the extension's kernel runs at the vector width torch
    uses for its own kernels; MKL on AMD CPUs does not). x (L, N, D) -> (L, N, G·H)."""

    @staticmethod
    def forward(ctx, backend, x, weight, bias):
        ctx.backend = backend
        ctx.save_for_backward(x, weight)
        return backend.mm(_flat(x), weight.t(), bias).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        return (None, *input_grads(ctx.backend.mm, ctx.needs_input_grad[1:4], grad, x, weight))


def input_grads(mm, needs, dxp, x, weight):
    """Gradients of x, W_ih and the folded bias from dxp (L, N, G·H): one product each."""
    g = _flat(dxp)  # (L·N, G·H)
    dx = mm(g, weight).view_as(x) if needs[0] else None
    dw = mm(g.t(), _flat(x)) if needs[1] else None
    db = g.sum(0) if needs[2] else None
    return dx, dw, db


def project(backend, cell, spec, x):
    """`cell.project_input(x)`, through `Projection` where the backend has its own product."""
    if backend is python_loop or spec.kind == "additive":
        return cell.project_input(x)
    return Projection.apply(backend, x, cell.weight_ih, cell.folded_bias())


class Recurrence(torch.autograd.Function):
    """One direction of one layer: (input, initial state, recurrent parameters) -> hbuf,
    final c, final FGR gates. See python_loop's module doc for the buffer layout.

    The input is xp (L, N, G·H), or, where the extension runs the input product inside
    each step, x (L, N, D) with weight_ih and bias_in (then xp is None and never exists)."""

    @staticmethod
    def run(backend, spec, lengths, xp, x, weight_ih, bias_in, h_init, c0, g0, weight_hh,
            bias_rec, weight_skip, peep, weight_gate, save):
        """The forward loop: (hbuf, cs, gs, acts), the saved buffers only when `save`."""
        inside = {} if xp is not None else {"x": x, "weight_ih": weight_ih, "bias_in": bias_in}
        with flush_denormals() if h_init.device.type == "cpu" else contextlib.nullcontext():
            return backend.forward(spec, xp, h_init, c0, g0, weight_hh, bias_rec, weight_skip, peep,
                                   weight_gate, lengths, save, **inside)

    @staticmethod
    def outputs(hbuf, cs, gs):
        outputs = (hbuf,)
        if cs is not None:
            outputs += (cs[-1],)
        if gs is not None:
            outputs += (gs[-1],)
        return outputs

    @staticmethod
    def forward(ctx, backend, spec, lengths, xp, x, weight_ih, bias_in, h_init, c0, g0, weight_hh,
                bias_rec, weight_skip, peep, weight_gate):
        save = any(ctx.needs_input_grad[3:])
        hbuf, cs, gs, acts = Recurrence.run(backend, spec, lengths, xp, x, weight_ih, bias_in, h_init,
                                            c0, g0, weight_hh, bias_rec, weight_skip, peep,
                                            weight_gate, save)
        ctx.spec, ctx.backend = spec, backend
        if save:
            ctx.save_for_backward(hbuf, cs, gs, acts, weight_hh, bias_rec, weight_skip, peep,
                                  weight_gate, lengths, x, weight_ih)
        return Recurrence.outputs(hbuf, cs, gs)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_hbuf, *grad_rest):
        if grad_hbuf.device.type != "cpu":
            return Recurrence._backward(ctx, grad_hbuf, *grad_rest)
        with flush_denormals():
            return Recurrence._backward(ctx, grad_hbuf, *grad_rest)

    @staticmethod
    def _backward(ctx, grad_hbuf, *grad_rest):
        spec, needs = ctx.spec, ctx.needs_input_grad
        (hbuf, cs, gs, acts, weight_hh, bias_rec, weight_skip, peep, weight_gate, lengths, x,
         weight_ih) = ctx.saved_tensors
        grad_c = grad_rest[0] if cs is not None else None
        grad_g = grad_rest[-1] if gs is not None else None
        dxp, dh_init, dc0, dg0, extra = ctx.backend.backward(
            spec, grad_hbuf, grad_c, grad_g, hbuf, cs, gs, acts, weight_hh, bias_rec,
            weight_skip, peep, weight_gate, lengths)
        grads = weight_grads(spec, needs[10:], dxp, extra, hbuf, cs, gs, acts, ctx.backend.mm)
        if x is not None:  # the input product ran inside the steps
            dx, dw_ih, db_in = input_grads(ctx.backend.mm, needs[4:7], dxp, x, weight_ih)
            return (None, None, None, None, dx, dw_ih, db_in, dh_init, dc0, dg0, *grads)
        return (None, None, None, dxp, None, None, None, dh_init, dc0, dg0, *grads)


def _backend(x: torch.Tensor):
    """The C++ loops where they are built and take x, else the Python loops."""
    if extension.available() and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return extension
    return python_loop


def run_direction(cell, x, state, mask, num_cell_states, skip=0, weight_skip=None, backend=None):
    """Run cell over x (L, N, D) from state (the cell's states, then the skip history),
    `Recurrent._run_direction`'s contract. mask (L, N, 1) bool or None.

    Returns (outputs (L, N, H), final state tuple), or None when the kernels do not
    cover the cell (the caller then runs its own loop). backend: python_loop or
    extension, chosen by `_backend` when None.
    """
    described = describe(cell, skip, weight_skip)
    if described is None:
        return None
    spec, params = described
    backend = backend or _backend(x)
    n = num_cell_states
    cell_state, history = state[:n], state[n:]
    training = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in cell.parameters()))
    if backend is extension and extension.projects_inside(spec, x.shape[1], training):
        xp, inputs = None, (x, cell.weight_ih, cell.folded_bias())
    else:
        xp, inputs = project(backend, cell, spec, x), (None, None, None)  # (L, N, G·H)
    h_init = torch.stack(history + cell_state[:1]) if history else cell_state[0].unsqueeze(0)
    c0 = cell_state[1] if spec.has_cell_state else None
    g0 = torch.cat(cell_state[2:5], dim=1) if spec.gate_recurrence else None
    lengths = None if mask is None else mask[:, :, 0].sum(0)  # (N,)
    args = (backend, spec, lengths, xp, *inputs, h_init, c0, g0, *params.as_tuple())
    if torch.is_grad_enabled():
        results = Recurrence.apply(*args)
    else:  # no graph: nothing is saved for a backward (parameters still say requires_grad)
        hbuf, cs, gs, _ = Recurrence.run(*args, save=False)
        results = Recurrence.outputs(hbuf, cs, gs)
    hbuf = results[0]
    L, off = x.shape[0], h_init.shape[0] - 1
    hs = hbuf[off + 1:]  # (L, N, H)
    final = (hs[-1],)  # a sequence past its length kept its state: the last row is its own
    if spec.has_cell_state:
        final += (results[1],)
    if spec.gate_recurrence:
        final += tuple(results[2].chunk(3, dim=1))
    if off:  # the d - 1 states before each sequence's last: h_{T-d+1}, ..., h_{T-1}
        if lengths is None:
            final += tuple(hbuf[L:L + off].unbind(0))  # hbuf[off + k] holds h after k steps
        else:
            index = lengths[None, :] + torch.arange(off, device=lengths.device)[:, None]  # (off, N)
            index = index[:, :, None].expand(off, hbuf.shape[1], hbuf.shape[2])
            final += tuple(hbuf.gather(0, index).unbind(0))
    out = hs if mask is None else hs.masked_fill(~mask, 0.0)
    return out, final
