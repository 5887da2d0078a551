"""Polyphonic music model: piano-roll frames -> Recurrent -> 88 independent Bernoulli outputs.

    x_t   = roll[t − 1] (a zero frame before the first)   (N, L, 88)
    h_t   = Recurrent(input_dropout(x))_t                 (N, L, H)   any rnnkit cell by name
    z_t   = W dropout(h_t) + b                            (N, L, 88)  logits
    p(roll[t, k] = 1 | roll[< t]) = σ(z_tk), independent across keys given the past

This is the "RNN with independent Bernoulli outputs" baseline of Boulanger-Lewandowski et
al. 2012 and the model of Chung et al. 2014's music experiments. Its loss is
`rnnkit.metrics.music.frame_nll` (nats per frame, summed over keys).
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import Recurrent

State = tuple[torch.Tensor, ...]


class PolyphonicModel(nn.Module):
    """Next-frame model over K binary keys.

    Args:
        keys: K (88 for a piano roll).
        cell: any rnnkit cell name; cell options (`variant=`, `nonlinearity=`, ...) in **cell_options.
        hidden_size: H. num_layers: stacked layers. dropout: between layers and before the output.
        input_dropout: while training, each sounding note of the input frames is dropped
            with this probability (the rest scaled by 1/(1-p)), so the model cannot lean
            on copying the previous frame.
    """

    def __init__(self, keys: int = 88, cell: str = "lstm", hidden_size: int = 36, num_layers: int = 1,
                 dropout: float = 0.0, input_dropout: float = 0.0, **cell_options):
        super().__init__()
        self.keys = keys
        self.input_drop = nn.Dropout(input_dropout)
        self.rnn = Recurrent(cell, keys, hidden_size, num_layers=num_layers, dropout=dropout, **cell_options)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, keys)

    @staticmethod
    def shift_right(roll: torch.Tensor) -> torch.Tensor:
        """The inputs of a roll (N, L, K): a zero frame, then frames 0..L−2 (teacher forcing)."""
        return torch.cat([torch.zeros_like(roll[:, :1]), roll[:, :-1]], dim=1)

    def forward(self, frames: torch.Tensor, state: State | None = None):
        """frames (N, L, K) the previous frames (0/1) -> (logits (N, L, K) of the next ones, state)."""
        out, state = self.rnn(self.input_drop(frames.to(self.head.weight.dtype)), state)  # (N, L, H)
        return self.head(self.drop(out)), state  # (N, L, K)

    def step(self, frame: torch.Tensor, state: State | None = None):
        """One step: frame (N, K) -> (logits (N, K) of the next frame, state). Constant work per frame."""
        out, state = self.rnn.step(self.input_drop(frame.to(self.head.weight.dtype)), state)  # (N, H)
        return self.head(out), state  # (N, K)

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
            logits, state = self(inputs)  # the zero start frame and the prime in one pass
            logits = logits[:, -1]  # (N, K): the first frame after the prime
            frames = [prime]
            for i in range(length):
                probs = torch.sigmoid(logits.float() / temperature)
                if greedy:
                    frame = (probs > 0.5).to(prime.dtype)
                else:
                    draw = torch.rand(probs.shape, generator=generator, device="cpu").to(probs.device)
                    frame = (draw < probs).to(prime.dtype)
                frames.append(frame[:, None])
                if i + 1 < length:
                    logits, state = self.step(frame, state)
            return torch.cat(frames, dim=1)
        finally:
            self.train(was_training)
