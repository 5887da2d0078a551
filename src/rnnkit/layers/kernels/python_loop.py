"""The recurrence loops in plain torch operations, forward and hand-written backward.

The same contract as the C++ loops (csrc/recurrence.cpp), used where the extension
is not built (no compiler, RNNKIT_NO_EXTENSION=1), for dtypes and devices it does not
take, and as their reference in tests/test_kernels.py.

Buffers (L steps, N batch, H hidden, off = max(skip - 1, 0) older states):
    hbuf (off + 1 + L, N, H): h_{-d+1}, ..., h_{-1} (the state's history), the initial
        h, then h after each step. Step t reads h_{t-1} = hbuf[off + t] and, with a
        skip d, h_{t-d} = hbuf[off + t + 1 - d]; it writes hbuf[off + t + 1].
    cs (L + 1, N, H): LSTM cell state, initial first. gs (L + 1, N, 3H): FGR's gates
        i, f, o, initial first. acts (L, N, S·H): gate activations for backward.
A sequence past its length keeps its state (each buffer copies the previous step's
row forward); its saved activations are zero and so are its gradients there. Without
`save` (no backward to come) a backend may return cs and gs holding only their last
entries: callers read cs[-1] and gs[-1] only.
"""
from __future__ import annotations

import torch

from .spec import COUPLED, GATE_RECURRENCE, NO_INPUT_ACT, NO_OUTPUT_ACT, PEEP_F, PEEP_I, PEEP_O


def mm(a, b, bias=None):
    """a (M, K) · b (K, N) (+ bias (N,))."""
    return a @ b if bias is None else torch.addmm(bias, a, b)


def _masks(lengths, L):
    """(L, N, 1) bool: step t is real for sequence n; or None."""
    if lengths is None:
        return None
    return (torch.arange(L, device=lengths.device)[:, None] < lengths[None, :]).unsqueeze(-1)


def _lstm_step(spec, pre, c, peep, a):
    """LSTM gate math on pre (N, G·H) in place; a (N, G·H) receives the activations.
    Returns (h, c_new)."""
    H, flags = spec.hidden_size, spec.flags
    bi, bf, bg, bo = (spec.block(g) for g in "ifgo")
    blk = lambda t, b: t[:, b * H:(b + 1) * H]  # noqa: E731
    if flags & PEEP_I:
        blk(pre, bi).addcmul_(c, peep[0])
    if flags & PEEP_F:
        blk(pre, bf).addcmul_(c, peep[1])
    sig = sum(b >= 0 for b in (bi, bf))  # i and f blocks come first
    if sig:
        torch.sigmoid(pre[:, :sig * H], out=a[:, :sig * H])
    if flags & NO_INPUT_ACT:
        blk(a, bg).copy_(blk(pre, bg))
    else:
        torch.tanh(blk(pre, bg), out=blk(a, bg))
    g = blk(a, bg)
    i = blk(a, bi) if bi >= 0 else None
    if flags & COUPLED:  # f = 1 - i: c = c + i (g - c)
        c_new = torch.lerp(c, g, i)
    else:
        ig = g if i is None else i * g
        c_new = ig + c if bf < 0 else torch.addcmul(ig, blk(a, bf), c)
    y = c_new if flags & NO_OUTPUT_ACT else torch.tanh(c_new)
    if bo < 0:
        return y, c_new
    if flags & PEEP_O:
        blk(pre, bo).addcmul_(c_new, peep[2])
    o = torch.sigmoid(blk(pre, bo), out=blk(a, bo))
    return o * y, c_new


def forward(spec, xp, h_init, c0, g0, weight_hh, bias_rec, weight_skip, peep, weight_gate,
            lengths, save):
    """Run the loop. Returns (hbuf, cs or None, gs or None, acts or None); see the module doc."""
    L, N, _ = xp.shape
    H, d, kind = spec.hidden_size, spec.skip, spec.kind
    off = h_init.shape[0] - 1
    masks = _masks(lengths, L)
    hbuf = xp.new_empty(off + 1 + L, N, H)
    hbuf[:off + 1] = h_init
    cs = gs = None
    if kind == "lstm":
        cs = xp.new_empty(L + 1, N, H)
        cs[0] = c0
        if spec.flags & GATE_RECURRENCE:
            gs = xp.new_empty(L + 1, N, 3 * H)
            gs[0] = g0
    width = spec.saved_width * H
    acts = xp.new_zeros(L, N, width) if save and width else None
    scratch = xp.new_empty(N, width) if width else None
    w_hh_t = weight_hh.t() if weight_hh is not None else None
    for t in range(L):
        h = hbuf[off + t]
        a = acts[t] if acts is not None else scratch
        xs = xp[t]  # (N, G·H); the skip term joins the input part
        if d:
            xs = torch.addmm(xs, hbuf[off + t + 1 - d], weight_skip.t())
        if kind == "lstm":
            pre = torch.addmm(xs, h, w_hh_t)
            if gs is not None:
                pre.addmm_(gs[t], weight_gate.t())
            h_new, c_new = _lstm_step(spec, pre, cs[t], peep, a)
            state_new = (h_new, c_new)
            if gs is not None:
                state_new += (torch.cat([a[:, :2 * H], a[:, 3 * H:]], dim=1),)
        elif kind == "gru":  # n = tanh(x_n + r (W_nh h + b_nh))
            rec = torch.mm(h, w_hh_t)  # (N, 3H)
            r_z = torch.sigmoid(xs[:, :2 * H] + rec[:, :2 * H], out=a[:, :2 * H])
            r, z = r_z[:, :H], r_z[:, H:]
            hn = torch.add(rec[:, 2 * H:], bias_rec, out=a[:, 3 * H:])
            n = torch.tanh(torch.addcmul(xs[:, 2 * H:], r, hn), out=a[:, 2 * H:3 * H])
            state_new = (torch.lerp(n, h, z),)
        elif kind == "gru_original":  # n = tanh(x_n + W_nh (r h))
            r_z = torch.sigmoid(torch.addmm(xs[:, :2 * H], h, w_hh_t[:, :2 * H]), out=a[:, :2 * H])
            r, z = r_z[:, :H], r_z[:, H:]
            n = torch.tanh(torch.addmm(xs[:, 2 * H:], r * h, w_hh_t[:, 2 * H:]), out=a[:, 2 * H:])
            state_new = (torch.lerp(n, h, z),)
        elif kind == "rnn_tanh":
            state_new = (torch.tanh(torch.addmm(xs, h, w_hh_t)),)
        elif kind == "rnn_relu":
            state_new = (torch.relu(torch.addmm(xs, h, w_hh_t)),)
        else:  # additive
            state_new = (h + xs,)
        if masks is not None:  # past its length a sequence keeps its state
            m = masks[t]
            state_old = (h,) + ((cs[t],) if cs is not None else ()) + ((gs[t],) if gs is not None else ())
            state_new = tuple(torch.where(m, new, old) for new, old in zip(state_new, state_old))
            if width:
                a.masked_fill_(~m, 0.0)
        hbuf[off + t + 1] = state_new[0]
        if cs is not None:
            cs[t + 1] = state_new[1]
        if gs is not None:
            gs[t + 1] = state_new[2]
    return hbuf, cs, gs, acts


def _lstm_backward_step(spec, dh, dc, dg, a, c_prev, c, peep):
    """Gradients of one LSTM step. dh, dc: (N, H) w.r.t. h_t, c_t; dg (N, 3H) w.r.t. FGR's
    i, f, o state or None. Returns (dpre (N, G·H), dc_prev)."""
    H, flags = spec.hidden_size, spec.flags
    bi, bf, bg, bo = (spec.block(g) for g in "ifgo")
    blk = lambda t, b: t[:, b * H:(b + 1) * H]  # noqa: E731
    dpre = torch.empty_like(a)
    y = c if flags & NO_OUTPUT_ACT else torch.tanh(c)
    if bo >= 0:
        o = blk(a, bo)
        do = dh * y
        if dg is not None:
            do = do + dg[:, 2 * H:]
        da_o = do * o * (1 - o)
        blk(dpre, bo).copy_(da_o)
        dy = dh * o
    else:
        dy = dh
    dc = dc + (dy if flags & NO_OUTPUT_ACT else dy * (1 - y * y))
    if flags & PEEP_O:
        dc = dc + da_o * peep[2]
    g = blk(a, bg)
    i = blk(a, bi) if bi >= 0 else None
    dg_ = dc if i is None else dc * i
    blk(dpre, bg).copy_(dg_ if flags & NO_INPUT_ACT else dg_ * (1 - g * g))
    if bf >= 0:
        f = blk(a, bf)
        df = dc * c_prev
        if dg is not None:
            df = df + dg[:, H:2 * H]
        da_f = df * f * (1 - f)
        blk(dpre, bf).copy_(da_f)
        dc_prev = dc * f
        if flags & PEEP_F:
            dc_prev = dc_prev + da_f * peep[1]
    else:
        dc_prev = dc * (1 - i) if flags & COUPLED else dc
    if i is not None:
        di = dc * (g - c_prev) if flags & COUPLED else dc * g
        if dg is not None:
            di = di + dg[:, :H]
        da_i = di * i * (1 - i)
        blk(dpre, bi).copy_(da_i)
        if flags & PEEP_I:
            dc_prev = dc_prev + da_i * peep[0]
    return dpre, dc_prev


def backward(spec, grad_hbuf, grad_c, grad_g, hbuf, cs, gs, acts, weight_hh, bias_rec,
             weight_skip, peep, weight_gate, lengths):
    """The backward loop. grad_hbuf (off + 1 + L, N, H): gradient of every h in hbuf;
    grad_c (N, H), grad_g (N, 3H): of the final c and FGR gates (or None).

    Returns (dxp (L, N, G·H), dh_init (off + 1, N, H), dc0, dg0, extra), where extra
    is GRU's gradient of its recurrent n-product (L, N, H) (for W_hh's n rows and
    b_nh), else None. Weight gradients are left to `weight_grads` after the loop.
    """
    H, d, kind = spec.hidden_size, spec.skip, spec.kind
    off = max(d - 1, 0)
    L, N = hbuf.shape[0] - off - 1, hbuf.shape[1]
    masks = _masks(lengths, L)
    dH = grad_hbuf.clone()
    dc = grad_c.clone() if cs is not None else None
    dg = grad_g.clone() if gs is not None else None
    dxp = hbuf.new_empty(L, N, spec.num_gates * H)
    extra = hbuf.new_empty(L, N, H) if kind == "gru" else None
    for t in reversed(range(L)):
        dh = dH[off + t + 1]
        h_prev = hbuf[off + t]
        m = masks[t] if masks is not None else None
        if m is not None:  # past its length a sequence only carries its gradient back
            # (its saved activations are zero, so its dpre below comes out zero)
            dh_pass, dh = torch.where(m, 0.0, dh), torch.where(m, dh, 0.0)
            if dc is not None:
                dc_pass, dc = torch.where(m, 0.0, dc), torch.where(m, dc, 0.0)
            if dg is not None:
                dg_pass, dg = torch.where(m, 0.0, dg), torch.where(m, dg, 0.0)
        a = acts[t] if acts is not None else None
        direct = None  # the part of dh_{t-1} that does not go through W_hh
        dpre = dxp[t]
        if kind == "lstm":
            step_grad, dc = _lstm_backward_step(spec, dh, dc, dg, a, cs[t], cs[t + 1], peep)
            dpre.copy_(step_grad)
            rec_grad, w = dpre, weight_hh
        elif kind in ("gru", "gru_original"):
            r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H]
            dz = dh * (h_prev - n)
            direct = dh * z
            da_n = dh * (1 - z) * (1 - n * n)
            dpre[:, 2 * H:] = da_n
            if kind == "gru":
                torch.mul(da_n, r, out=extra[t])
                dr = da_n * a[:, 3 * H:]
            else:
                d_rh = da_n @ weight_hh[2 * H:]  # (N, H)
                dr = d_rh * h_prev
                direct = direct + d_rh * r
            dpre[:, :H] = dr * r * (1 - r)
            dpre[:, H:2 * H] = dz * z * (1 - z)
            if kind == "gru":
                rec_grad, w = torch.cat([dpre[:, :2 * H], extra[t]], dim=1), weight_hh
            else:
                rec_grad, w = dpre[:, :2 * H], weight_hh[:2 * H]
        elif kind == "rnn_tanh":
            h = hbuf[off + t + 1]
            torch.mul(dh, 1 - h * h, out=dpre)
            rec_grad, w = dpre, weight_hh
        elif kind == "rnn_relu":
            torch.mul(dh, hbuf[off + t + 1] > 0, out=dpre)
            rec_grad, w = dpre, weight_hh
        else:  # additive
            dpre.copy_(dh)
            rec_grad, direct = None, dh
        target = dH[off + t]
        if rec_grad is not None:
            target.addmm_(rec_grad, w)
        if direct is not None:
            target += direct
        if d:
            dH[off + t + 1 - d].addmm_(dpre, weight_skip)
        if gs is not None:
            dg = dpre @ weight_gate  # (N, 3H): w.r.t. i, f, o of the step before
        if m is not None:
            target += dh_pass
            if dc is not None:
                dc = dc + dc_pass
            if dg is not None:
                dg = dg + dg_pass
    return dxp, dH[:off + 1], dc, dg, extra
