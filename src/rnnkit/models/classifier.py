"""Sequence classifier, sequence tagger, and the MLP-on-windows baseline.

    x_t ← [x_t, x_t − x_{t−1}] (differences, optional; 0 at t = 1)           (N, L, 2D)
    u_t = P x_t (input projection, optional) or E[x_t] (embedding, token ids)   (N, L, E)
    u_t ← relu(Σ_j C_j u_{t+j} + c), j = −k//2 .. k//2 (a convolution, optional)   (N, L, C)
    h_t = Recurrent(u)_t                                  (N, L, dirs·H)   any cell, stacked, bidirectional
    classifier: z = pool(h_1..h_len) → logits = W dropout(z) + b          (N, K)
    tagger:     logits_t = W dropout(h_t) + b                               (N, L, K)

Pooling over the real steps 1..len of each sequence (never the padding):
- `last`: the output at the last real step; bidirectional: the forward half there and
  the backward half at step 1 (each direction's final state);
- `mean`, `max`: over the real steps; `meanmax`: both, concatenated (2F features; the
  "concat pooling" of Howard & Ruder 2018 without the last state); `meanstd`: the mean and
  the standard deviation sqrt(max(mean(h²) − mean(h)², 1e-5)) (2F features; the statistics
  pooling of x-vector speaker embeddings, Snyder et al. 2018);
- `attention`: a_t = softmax_t(q · tanh(W h_t + b)) with a learned query q, z = Σ a_t h_t
  (Bahdanau-style additive scoring; Yang et al. 2016 call q the context vector).

The convolution front end (as in convolutional-recurrent models such as DeepConvLSTM,
Ordóñez & Roggen 2016) gives every step features of its k neighbours before the
recurrence; steps past a sequence's end count as zeros, as if it were run alone.
So the answer for a sequence never depends on what it was batched with: the tests
compare a ragged batch with each sequence run alone.

The fully convolutional branch (`fcn_channels`; LSTM-FCN, Karim et al. 2017, after the
FCN of Wang et al. 2017) runs beside the recurrence on the raw inputs: blocks of
convolution ("same" padding) → batch norm → ReLU, then the mean over the real steps,
concatenated with the pooled recurrent vector before the output layer. Its batch norm
takes its statistics from real steps only and every block re-zeroes the padding, so
here too a ragged batch answers as its sequences run alone (in eval mode; in training,
batch norm's statistics are the batch's by design).

`WindowMLP` is the lectures' feed-forward baseline: it sees the sequence only through
windows of w steps, flattened in order (`ordered`) or averaged (`bag`, order-free),
each through the same MLP, the window vectors pooled (mean or max) into class logits.
Anything that depends on order across more than w steps is invisible to it.

`SequenceEnsemble` holds E independently initialised copies of any of them (a deep ensemble,
Lakshminarayanan et al. 2017): each member is trained on its own loss, and the
ensemble answers with the log of the members' mean class probabilities.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import Dropout, Recurrent

POOLINGS = ("last", "mean", "max", "meanmax", "meanstd", "attention")
State = tuple[torch.Tensor, ...]


def length_mask(lengths: torch.Tensor | None, N: int, L: int, device=None) -> torch.Tensor:
    """(N, L) bool, True at real steps (all True when lengths is None)."""
    if lengths is None:
        return torch.ones(N, L, dtype=torch.bool, device=device)
    lengths = torch.as_tensor(lengths, device=device)
    return torch.arange(L, device=device)[None, :] < lengths[:, None]


@torch.no_grad()
def chrono_init(rnn: Recurrent, max_length: int) -> None:
    """Chrono initialisation (Tallec & Ollivier 2018) of every LSTM cell of `rnn`, in place.

    Forget-gate bias b_f = log(u), u ~ U(1, max_length - 1) per unit, input-gate bias
    b_i = -b_f (bias_hh of both gates zeroed): units start with memory time scales spread
    up to max_length steps, instead of the ~e steps of forget bias 1. Gate order i, f, g, o.
    """
    if rnn.cell_name != "lstm":
        raise ValueError(f"chrono initialisation is for LSTM cells, this layer runs {rnn.cell_name!r}")
    for cell in rnn.cells:
        if cell.num_gates != 4:
            raise ValueError("chrono initialisation needs the input and forget gates (LSTM variants with "
                             f"4 gate blocks), this cell has {cell.num_gates}")
        H = cell.hidden_size
        forget = torch.empty(H).uniform_(1, max(max_length - 1, 2)).log_()
        cell.bias_hh[: 2 * H].zero_()
        cell.bias_ih[H: 2 * H] = forget
        cell.bias_ih[:H] = -forget


class SequenceEncoder(nn.Module):
    """Inputs → (projection or embedding) → Recurrent; the body of the classifier and the tagger.

    Args:
        input_size: D features per step, or the vocabulary size V when `embedding`.
        cell, hidden_size (H), num_layers, bidirectional, dropout (between layers),
            **cell_options: as `Recurrent`.
        projection_size: E > 0 puts a linear layer D → E before the recurrence (0: none).
        embedding: inputs are token ids (N, L) into an embedding of `projection_size`
            (default H) dimensions.
        conv_width: k > 0 (odd) puts a convolution over time of width k, "same" padding and
            ReLU, after the projection or embedding (0: none); conv_channels: its outputs
            (0: as many as its inputs).
        deltas: each step also gets its difference from the step before (the "delta"
            features of speech recognition; 0 at the first step), D → 2D inputs.
    """

    def __init__(self, input_size: int, cell: str = "lstm", hidden_size: int = 64, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, projection_size: int = 0,
                 embedding: bool = False, conv_width: int = 0, conv_channels: int = 0, deltas: bool = False,
                 **cell_options):
        super().__init__()
        if input_size < 1:
            raise ValueError(f"input_size must be >= 1, got {input_size}")
        if deltas and embedding:
            raise ValueError("deltas are differences of real-valued features, not of token ids (embedding)")
        self.deltas = deltas
        if deltas:
            input_size *= 2
        if conv_width < 0 or (conv_width and conv_width % 2 == 0):
            raise ValueError(f"conv_width must be 0 (off) or odd (the step in the middle), got {conv_width}")
        self.embedding = None
        self.projection = None
        rnn_input = input_size
        if embedding:
            rnn_input = projection_size or hidden_size
            self.embedding = nn.Embedding(input_size, rnn_input)
        elif projection_size:
            rnn_input = projection_size
            self.projection = nn.Linear(input_size, projection_size)
        self.conv = None
        if conv_width:
            channels = conv_channels or rnn_input
            self.conv = nn.Conv1d(rnn_input, channels, conv_width, padding=conv_width // 2)
            rnn_input = channels
        self.rnn = Recurrent(cell, rnn_input, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                             dropout=dropout, **cell_options)
        self.output_size = self.rnn.output_size

    def forward(self, x: torch.Tensor, state: State | None = None, lengths=None):
        """x (N, L, D) float or (N, L) ids -> (outputs (N, L, dirs·H), state); padded outputs are 0."""
        if self.deltas:  # step t reads only steps t and t - 1, so padding after the end changes nothing
            x = torch.cat([x, torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], 1)], -1)  # (N, L, 2D)
        if self.embedding is not None:
            x = self.embedding(x.long())  # (N, L, E)
        elif self.projection is not None:
            x = self.projection(x)  # (N, L, E)
        if self.conv is not None:
            if lengths is not None:  # padding reads as zeros, as past the end of a sequence run alone
                x = x * length_mask(lengths, x.shape[0], x.shape[1], x.device).unsqueeze(-1).to(x.dtype)
            x = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # (N, L, C)
        return self.rnn(x, state, lengths)


class Pooling(nn.Module):
    """Pools (N, L, F) step outputs over each sequence's real steps into (N, F); see the module docstring."""

    def __init__(self, mode: str, features: int, bidirectional: bool = False):
        super().__init__()
        if mode not in POOLINGS:
            raise ValueError(f"unknown pooling {mode!r}: expected one of {', '.join(POOLINGS)}")
        self.mode, self.bidirectional = mode, bidirectional
        self.output_size = 2 * features if mode in ("meanmax", "meanstd") else features
        if mode == "attention":
            self.score = nn.Linear(features, features)
            self.query = nn.Parameter(torch.randn(features) / features ** 0.5)

    def forward(self, h: torch.Tensor, lengths=None, return_weights: bool = False):
        N, L, F_ = h.shape
        mask = length_mask(lengths, N, L, h.device)  # (N, L)
        weights = None
        if self.mode == "last":
            last = (mask.sum(1) - 1).clamp(min=0)  # (N,) index of the last real step
            forward_part = h[torch.arange(N, device=h.device), last]  # (N, F)
            if self.bidirectional:  # the backward direction ends at step 0
                half = F_ // 2
                pooled = torch.cat([forward_part[:, :half], h[:, 0, half:]], dim=-1)
            else:
                pooled = forward_part
        elif self.mode in ("mean", "max", "meanmax"):
            m = mask.unsqueeze(-1).to(h.dtype)
            mean = (h * m).sum(1) / m.sum(1).clamp(min=1)
            peak = h.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
            pooled = mean if self.mode == "mean" else peak if self.mode == "max" else torch.cat([mean, peak], -1)
        elif self.mode == "meanstd":
            m = mask.unsqueeze(-1).to(h.dtype)
            count = m.sum(1).clamp(min=1)
            mean = (h * m).sum(1) / count
            var = (((h - mean.unsqueeze(1)) * m) ** 2).sum(1) / count  # biased, over the real steps
            pooled = torch.cat([mean, var.clamp(min=1e-5).sqrt()], -1)
        else:
            scores = torch.tanh(self.score(h)) @ self.query  # (N, L)
            weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=1)  # (N, L)
            pooled = torch.einsum("nl,nlf->nf", weights, h)
        return (pooled, weights) if return_weights else pooled


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """Batch norm over (N, C, L) whose training statistics come from the real steps only.

    In training, the mean and (biased) variance per channel are taken over the positions
    where `mask` (N, L) is True, and the running statistics are updated with the unbiased
    variance, as nn.BatchNorm1d does; in eval mode the running statistics are used.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None or not self.training:
            return super().forward(x)
        m = mask.unsqueeze(1).to(x.dtype)  # (N, 1, L)
        count = m.sum().clamp(min=1)
        mean = (x * m).sum((0, 2)) / count  # (C,)
        var = (((x - mean[None, :, None]) * m) ** 2).sum((0, 2)) / count
        with torch.no_grad():
            self.num_batches_tracked += 1
            unbiased = var * count / (count - 1).clamp(min=1)
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(unbiased.detach(), self.momentum)
        y = (x - mean[None, :, None]) * torch.rsqrt(var[None, :, None] + self.eps)
        return y * self.weight[None, :, None] + self.bias[None, :, None]


class ConvBranch(nn.Module):
    """The FCN branch: [Conv1d(k_i, same padding) → MaskedBatchNorm → ReLU] per block, then the
    mean over the real steps: (N, L, D) → (N, C_last).

    Widths may be even ("same" padding then puts the extra zero after the sequence, as Keras
    does); padding is zeroed before every block, so past a sequence's end reads as zeros.
    """

    def __init__(self, input_size: int, channels: tuple[int, ...], widths: tuple[int, ...]):
        super().__init__()
        if len(channels) != len(widths) or not channels:
            raise ValueError(f"fcn_channels and fcn_widths need one entry per block, got {list(channels)} and "
                             f"{list(widths)}")
        if min(channels) < 1 or min(widths) < 1:
            raise ValueError(f"fcn_channels and fcn_widths must be >= 1, got {list(channels)} and {list(widths)}")
        self.widths = tuple(widths)
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        c_in = input_size
        for c, k in zip(channels, widths):
            self.convs.append(nn.Conv1d(c_in, c, k))
            self.norms.append(MaskedBatchNorm1d(c))
            c_in = c
        self.output_size = c_in

    def forward(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        N, L, _ = x.shape
        mask = length_mask(lengths, N, L, x.device)  # (N, L)
        m = mask.unsqueeze(1).to(x.dtype)  # (N, 1, L)
        y = x.transpose(1, 2)  # (N, D, L)
        for conv, norm, k in zip(self.convs, self.norms, self.widths):
            y = F.pad(y * m, ((k - 1) // 2, k // 2))  # zeros at padding and past both ends
            y = torch.relu(norm(conv(y), mask))  # (N, C, L)
        return (y * m).sum(2) / m.sum(2).clamp(min=1)  # (N, C)


class SequenceClassifier(nn.Module):
    """Many-to-one: a sequence → K class logits (or K real outputs for regression).

    Args:
        input_size: D (or V with `embedding`). num_outputs: K.
        pooling: last, mean, max, meanmax, meanstd or attention.
        dropout: between recurrent layers and on the pooled vector.
        fcn_channels, fcn_widths: blocks of a fully convolutional branch beside the recurrence
            (LSTM-FCN; e.g. (128, 256, 128) and (8, 5, 3)); () for none.
        the rest: as `SequenceEncoder`.

    `forward(x, state=None, lengths=None) -> (logits (N, K), state)`.
    """

    def __init__(self, input_size: int, num_outputs: int, cell: str = "lstm", hidden_size: int = 64,
                 num_layers: int = 1, bidirectional: bool = False, pooling: str = "last", dropout: float = 0.0,
                 projection_size: int = 0, embedding: bool = False, conv_width: int = 0, conv_channels: int = 0,
                 fcn_channels: tuple[int, ...] = (), fcn_widths: tuple[int, ...] = (), deltas: bool = False,
                 **cell_options):
        super().__init__()
        self.encoder = SequenceEncoder(input_size, cell, hidden_size, num_layers, bidirectional, dropout,
                                       projection_size, embedding, conv_width, conv_channels, deltas,
                                       **cell_options)
        self.pool = Pooling(pooling, self.encoder.output_size, bidirectional)
        self.fcn = None
        features = self.pool.output_size
        if fcn_channels or fcn_widths:
            if embedding:
                raise ValueError("the convolutional branch reads real-valued features, not token ids (embedding)")
            self.fcn = ConvBranch(input_size, tuple(fcn_channels), tuple(fcn_widths))
            features += self.fcn.output_size
        self.drop = Dropout(dropout)
        self.head = nn.Linear(features, num_outputs)

    def forward(self, x: torch.Tensor, state: State | None = None, lengths=None):
        h, state = self.encoder(x, state, lengths)  # (N, L, dirs·H)
        z = self.pool(h, lengths)  # (N, dirs·H)
        if self.fcn is not None:
            z = torch.cat([z, self.fcn(x, lengths)], dim=-1)  # (N, dirs·H + C)
        return self.head(self.drop(z)), state  # (N, K)

    @torch.no_grad()
    def attention_weights(self, x: torch.Tensor, lengths=None) -> torch.Tensor:
        """(N, L) weights of attention pooling (0 at padding); only for pooling='attention'."""
        if self.pool.mode != "attention":
            raise ValueError(f"attention_weights needs pooling='attention', this model pools by {self.pool.mode!r}")
        h, _ = self.encoder(x, None, lengths)
        return self.pool(h, lengths, return_weights=True)[1]


class SequenceTagger(nn.Module):
    """Aligned many-to-many: one prediction per real step.

    `forward(x, state=None, lengths=None) -> (logits (N, L, K), state)`; logits at padded
    steps are computed from zero outputs and must be ignored by the loss (targets IGNORE).
    Arguments as `SequenceClassifier` (no pooling).
    """

    def __init__(self, input_size: int, num_outputs: int, cell: str = "lstm", hidden_size: int = 64,
                 num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.0,
                 projection_size: int = 0, embedding: bool = False, conv_width: int = 0, conv_channels: int = 0,
                 deltas: bool = False, **cell_options):
        super().__init__()
        self.encoder = SequenceEncoder(input_size, cell, hidden_size, num_layers, bidirectional, dropout,
                                       projection_size, embedding, conv_width, conv_channels, deltas,
                                       **cell_options)
        self.drop = Dropout(dropout)
        self.head = nn.Linear(self.encoder.output_size, num_outputs)

    def forward(self, x: torch.Tensor, state: State | None = None, lengths=None):
        h, state = self.encoder(x, state, lengths)  # (N, L, dirs·H)
        return self.head(self.drop(h)), state  # (N, L, K)


class WindowMLP(nn.Module):
    """The feed-forward baseline: an MLP on fixed windows of w steps, pooled over the windows.

    Args:
        input_size: D. num_outputs: K. window: w steps.
        hidden_size: units of each of the `num_layers` hidden layers (ReLU).
        mode: `ordered` flattens a window's w·D values in order; `bag` averages its w steps
            (order-free; with w ≥ L it is a bag of steps).
        pooling: `mean` or `max` over the windows of a sequence.
        per_step: a tagger: step t gets the window that ends at t (zeros before the start).

    Windows start at every real step s with s + w ≤ len; a sequence shorter than w gets
    one window, zero-padded. `forward(x, state=None, lengths=None) -> (logits, None)`:
    (N, K), or (N, L, K) with per_step.
    """

    def __init__(self, input_size: int, num_outputs: int, window: int = 5, hidden_size: int = 128,
                 num_layers: int = 1, mode: str = "ordered", pooling: str = "mean", dropout: float = 0.0,
                 per_step: bool = False):
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if mode not in ("ordered", "bag"):
            raise ValueError(f"mode must be 'ordered' or 'bag', got {mode!r}")
        if pooling not in ("mean", "max"):
            raise ValueError(f"WindowMLP pooling must be 'mean' or 'max', got {pooling!r}")
        self.window, self.mode, self.pooling, self.per_step = window, mode, pooling, per_step
        width = input_size * window if mode == "ordered" else input_size
        layers = []
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_size), nn.ReLU(), Dropout(dropout)]
            width = hidden_size
        self.mlp = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_outputs)

    def _windows(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L', D) -> (N, L' - w + 1, w, D)."""
        return x.unfold(1, self.window, 1).transpose(2, 3)

    def forward(self, x: torch.Tensor, state=None, lengths=None):
        N, L, D = x.shape
        w = self.window
        mask = length_mask(lengths, N, L, x.device)
        x = x * mask.unsqueeze(-1).to(x.dtype)  # whatever the padding held, it reads as zeros
        if self.per_step:  # window ending at t: zeros before the start
            win = self._windows(F.pad(x, (0, 0, w - 1, 0)))  # (N, L, w, D)
        else:
            win = self._windows(F.pad(x, (0, 0, 0, max(w - L, 0))))  # (N, S, w, D)
        v = win.flatten(2) if self.mode == "ordered" else win.mean(2)  # (N, S, w·D) or (N, S, D)
        z = self.mlp(v)  # (N, S, hidden)
        if self.per_step:
            return self.head(z), None  # (N, L, K)
        S = z.shape[1]
        real = mask.sum(1) if lengths is not None else torch.full((N,), L, device=x.device)
        starts = torch.arange(S, device=x.device)[None, :]
        valid = (starts <= (real[:, None] - w)) | (starts == 0)  # (N, S): windows inside the sequence
        if self.pooling == "mean":
            m = valid.unsqueeze(-1).to(z.dtype)
            pooled = (z * m).sum(1) / m.sum(1)
        else:
            pooled = z.masked_fill(~valid.unsqueeze(-1), float("-inf")).amax(1)
        return self.head(pooled), None  # (N, K)


class SequenceEnsemble(nn.Module):
    """E independently initialised members; the answer is the log of their mean probabilities.

    `forward(x, state=None, lengths=None)` returns (log p̄ (N, K) or (N, L, K), None),
    p̄ = mean over members of softmax(member logits): log-probabilities, usable as
    logits (argmax, cross-entropy). With `members=True` it returns the members' own
    logits stacked, (E, N, K) or (E, N, L, K), for training each on its own loss.
    `regression=True`: the members' outputs are averaged instead.
    """

    def __init__(self, members: list[nn.Module], regression: bool = False):
        super().__init__()
        if len(members) < 1:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.regression = regression

    def forward(self, x: torch.Tensor, state=None, lengths=None, members: bool = False):
        outs = torch.stack([m(x, None, lengths)[0] for m in self.members])  # (E, N, ..., K)
        if members:
            return outs, None
        if self.regression:
            return outs.mean(0), None
        log_mean = torch.logsumexp(outs.float().log_softmax(-1), dim=0) - torch.log(torch.tensor(float(len(outs))))
        return log_mean, None
