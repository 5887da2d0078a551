"""Polyphonic music model: piano-roll frames -> Recurrent -> 88 independent Bernoulli outputs.

    x_t   = roll[t − 1] (a zero frame before the first)   (N, L, 88)
    h_t   = Recurrent(input_dropout(x))_t                 (N, L, H)   any rnnkit cell by name
    z_t   = W dropout(h_t) + b                            (N, L, 88)  logits
    p(roll[t, k] = 1 | roll[< t]) = σ(z_tk), independent across keys given the past

This is the "RNN with independent Bernoulli outputs" baseline of Boulanger-Lewandowski et
al. 2012 and the model of Chung et al. 2014's music experiments. Its loss is
`rnnkit.metrics.music.frame_nll` (nats per frame, summed over keys).

output="autoregressive" lets the keys of a frame depend on each other, lowest first (a
fully visible sigmoid belief net conditioned on the RNN, the simplest of the RNN-NADE /
RNN-RBM family of Boulanger-Lewandowski et al. 2012):

    p(roll[t, k] = 1 | roll[< t], roll[t, < k]) = σ(z_tk + Σ_{j<k} V_kj roll[t, j])

V strictly lower triangular, zero at the start. Training and the NLL are exact with the
frame itself as input (teacher forcing within the frame); sampling and greedy decoding go
key by key.

PolyphonicEnsemble: E independently initialised models whose predictions of each next
frame are mixed, as a classifier ensemble mixes its members' class probabilities, with
the frame (all 88 keys together) as the outcome:

    p(frame_t | past) = (1/E) Σ_e Π_k p_e(y_tk | past)      NLL_t = −log mean_e exp(−NLL^e_t)

so its NLL is at most the members' mean (Jensen). A key's marginal probability is the
members' mean σ(z^e_tk) (frame accuracy thresholds it); sampling draws a member for each
frame of each sequence, then the frame from that member.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import Dropout, Recurrent
from ..metrics.music import frame_nll

State = tuple[torch.Tensor, ...]
OUTPUTS = ("independent", "autoregressive")


class RollModel(nn.Module):
    """What every next-frame model shares: teacher-forced inputs and sampling a continuation.

    Subclasses give `keys`, forward(frames (N, L, K), state) -> (logits (N, L, K), state)
    and step(frame (N, K), state) -> (logits (N, K), state).
    """

    keys: int

    @staticmethod
    def shift_right(roll: torch.Tensor) -> torch.Tensor:
        """The inputs of a roll (N, L, K): a zero frame, then frames 0..L−2 (teacher forcing)."""
        return torch.cat([torch.zeros_like(roll[:, :1]), roll[:, :-1]], dim=1)

    def draw(self, logits: torch.Tensor, temperature: float, greedy: bool, generator) -> torch.Tensor:
        """The next frame (N, K) from logits (N, K): key k on with probability σ(z_k / temperature)."""
        probs = torch.sigmoid(logits.float() / temperature)
        if greedy:
            return (probs > 0.5).float()
        return (torch.rand(probs.shape, generator=generator, device="cpu").to(probs.device) < probs).float()

    def _sampling(self, frames, state=None, step: bool = False):
        """What `draw` reads: forward / step's logits (an ensemble gives its members')."""
        return self.step(frames, state) if step else self(frames, state)

    @torch.inference_mode()
    def continue_roll(self, prime: torch.Tensor, length: int, temperature: float = 1.0, greedy: bool = False,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Frames (N, P + length, K): the prime (N, P, K), P >= 0, then `length` sampled frames.

        Each new frame draws key k on with probability σ(z_k / temperature), independently
        (greedy: on where σ(z_k) > 0.5), and is fed back as the next input.
        """
        was_training = self.training
        self.eval()
        try:
            n = prime.shape[0]
            inputs = torch.cat([torch.zeros(n, 1, self.keys, device=prime.device, dtype=prime.dtype), prime], 1)
            logits, state = self._sampling(inputs)  # the zero start frame and the prime in one pass
            logits = logits[..., -1, :]  # (…, N, K): the first frame after the prime
            frames = [prime]
            for i in range(length):
                frame = self.draw(logits, temperature, greedy, generator).to(prime.dtype)
                frames.append(frame[:, None])
                if i + 1 < length:
                    logits, state = self._sampling(frame, state, step=True)
            return torch.cat(frames, dim=1)
        finally:
            self.train(was_training)


class PolyphonicModel(RollModel):
    """Next-frame model over K binary keys.

    Args:
        keys: K (88 for a piano roll).
        cell: any rnnkit cell name; cell options (`variant=`, `nonlinearity=`, ...) in **cell_options.
        hidden_size: H. num_layers: stacked layers. dropout: between layers and before the output.
        input_dropout: while training, each sounding note of the input frames is dropped
            with this probability (the rest scaled by 1/(1-p)), so the model cannot lean
            on copying the previous frame.
        output: "independent" (keys independent given the past) or "autoregressive" (each
            key also given the keys below it in its frame; forward then needs targets=).
    """

    def __init__(self, keys: int = 88, cell: str = "lstm", hidden_size: int = 36, num_layers: int = 1,
                 dropout: float = 0.0, input_dropout: float = 0.0, output: str = "independent", **cell_options):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output {output!r}: expected one of {', '.join(OUTPUTS)}")
        self.keys, self.output = keys, output
        self.input_drop = Dropout(input_dropout)
        self.rnn = Recurrent(cell, keys, hidden_size, num_layers=num_layers, dropout=dropout, **cell_options)
        self.drop = Dropout(dropout)
        self.head = nn.Linear(hidden_size, keys)
        self.within = None
        if output == "autoregressive":  # V: key k reads keys j < k of its own frame
            self.within = nn.Parameter(torch.zeros(keys, keys))
            self.register_buffer("below", torch.ones(keys, keys).tril(-1), persistent=False)

    def past_logits(self, frames: torch.Tensor, state: State | None = None):
        """frames (N, L, K) the previous frames (0/1) -> (z (N, L, K): what the past says of each key, state)."""
        out, state = self.rnn(self.input_drop(frames.to(self.head.weight.dtype)), state)  # (N, L, H)
        return self.head(self.drop(out)), state  # (N, L, K)

    def forward(self, frames: torch.Tensor, state: State | None = None, targets: torch.Tensor | None = None):
        """frames (N, L, K) the previous frames (0/1) -> (logits (N, L, K) of the next ones, state).

        An autoregressive output needs `targets` (N, L, K), the next frames themselves: key
        k's logit then conditions on the keys below it in its frame, and the NLL is exact.
        """
        logits, state = self.past_logits(frames, state)
        if self.within is not None:
            if targets is None:
                raise ValueError("an autoregressive output needs the next frames (targets=) to score them; "
                                 "continue_roll samples key by key")
            logits = logits + self.within_logits(targets)
        return logits, state

    def within_logits(self, frame: torch.Tensor) -> torch.Tensor:
        """Σ_{j<k} V_kj frame_j for every key k: frame (..., K) -> (..., K)."""
        return F.linear(frame.to(self.within.dtype), self.within * self.below)

    def step(self, frame: torch.Tensor, state: State | None = None):
        """One step: frame (N, K) -> (the past's logits z (N, K) of the next frame, state). Constant work per frame."""
        out, state = self.rnn.step(self.input_drop(frame.to(self.head.weight.dtype)), state)  # (N, H)
        return self.head(out), state  # (N, K)

    def _sampling(self, frames, state=None, step: bool = False):
        return self.step(frames, state) if step else self.past_logits(frames, state)

    def draw(self, logits: torch.Tensor, temperature: float, greedy: bool, generator) -> torch.Tensor:
        """The next frame (N, K) from the past's logits: at once, or key by key (autoregressive)."""
        if self.within is None:
            return super().draw(logits, temperature, greedy, generator)
        frame = torch.zeros_like(logits, dtype=torch.float32)
        v = (self.within * self.below).float()
        for k in range(self.keys):  # key k sees the keys already drawn below it
            frame[:, k] = super().draw(logits[:, k:k + 1].float() + frame @ v[k:k + 1].T, temperature, greedy,
                                       generator)[:, 0]
        return frame

    @torch.no_grad()
    def greedy_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Each next frame (N, L, K) 0/1 decoded from the true past: keys on where σ > 0.5, key by key
        for an autoregressive output (what frame accuracy scores)."""
        logits, _ = self.past_logits(frames)
        if self.within is None:
            return (logits > 0).float()
        flat = logits.reshape(-1, self.keys)
        return self.draw(flat, 1.0, True, None).reshape(logits.shape)


class PolyphonicEnsemble(RollModel):
    """E independently initialised next-frame models; each key's probability is their mean.

    forward / step return logit(p̄), p̄ = mean_e σ(z^e), and a list of the members' states;
    forward(..., members=True) returns the members' own logits stacked (E, N, L, K),
    for training each member on its own loss.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if len(members) < 1:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.keys = members[0].keys

    @staticmethod
    def mean_probability_logits(logits: torch.Tensor) -> torch.Tensor:
        """logits (E, ...) -> logit of the mean probability (...), in log space (no overflow)."""
        log_e = math.log(logits.shape[0])
        log_p = torch.logsumexp(F.logsigmoid(logits.float()), 0) - log_e  # log p̄
        log_q = torch.logsumexp(F.logsigmoid(-logits.float()), 0) - log_e  # log (1 − p̄)
        return log_p - log_q

    def forward(self, frames: torch.Tensor, state=None, members: bool = False):
        """frames (N, L, K) -> (marginal logits (N, L, K), or the members' (E, N, L, K); the members' states)."""
        outs = [m(frames, None if state is None else state[i]) for i, m in enumerate(self.members)]
        logits = torch.stack([o[0] for o in outs])
        return (logits if members else self.mean_probability_logits(logits)), [o[1] for o in outs]

    def step(self, frame: torch.Tensor, state=None, members: bool = False):
        outs = [m.step(frame, None if state is None else state[i]) for i, m in enumerate(self.members)]
        logits = torch.stack([o[0] for o in outs])  # (E, N, K)
        return (logits if members else self.mean_probability_logits(logits)), [o[1] for o in outs]

    @staticmethod
    def mixture_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The ensemble's NLL per frame, −log mean_e exp(−NLL^e): members' logits (E, ..., K) -> (...)."""
        each = frame_nll(logits, targets.expand_as(logits))  # (E, ...)
        return -(torch.logsumexp(-each, 0) - math.log(logits.shape[0]))

    def _sampling(self, frames, state=None, step: bool = False):
        return self.step(frames, state, members=True) if step else self(frames, state, members=True)

    def draw(self, logits: torch.Tensor, temperature: float, greedy: bool, generator) -> torch.Tensor:
        """logits (E, N, K): greedy thresholds the marginal; sampling picks a member per row, then its frame."""
        if greedy:
            return super().draw(self.mean_probability_logits(logits), temperature, True, generator)
        pick = torch.randint(len(self.members), (logits.shape[1],), generator=generator).to(logits.device)
        return super().draw(logits[pick, torch.arange(logits.shape[1], device=logits.device)], temperature, False,
                            generator)
