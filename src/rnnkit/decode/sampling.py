"""Decoding strategies and the step-by-step generator.

A strategy looks at the logits of the next token for every row being decoded and
returns a `Selection`: the chosen token per row and, for strategies that keep
several hypotheses (beam search), which previous row each new row continues
(`reorder`; None means row i continues row i). The generator applies `reorder` to
the recurrent state, so beam search joins by implementing the same `select`.

    Greedy()                          argmax (char-rnn's -sample 0)
    Sample(temperature, top_k, seed)  softmax(logits / temperature), optionally only the k best

`generate(model, prime, length, strategy)` runs the prime through `model.forward`
once, then calls `model.step` once per generated token, carrying the state: constant
work per token, the prefix is never re-read. It yields token ids as they come, so
callers can stream them.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple

import torch


class Selection(NamedTuple):
    """tokens (N,) the chosen ids; reorder (N,) the previous row each row continues, or None."""

    tokens: torch.Tensor
    reorder: torch.Tensor | None = None


class DecodeStrategy:
    """Chooses the next token from logits (N, V). Subclasses implement `select`."""

    def select(self, logits: torch.Tensor) -> Selection:
        raise NotImplementedError


class Greedy(DecodeStrategy):
    """The most probable token (argmax; ties go to the lowest id)."""

    def select(self, logits: torch.Tensor) -> Selection:
        return Selection(logits.argmax(dim=-1))

    def __repr__(self) -> str:
        return "Greedy()"


class Sample(DecodeStrategy):
    """Draw from softmax(logits / temperature), restricted to the top_k best tokens when top_k > 0.

    temperature > 0: below 1 sharpens (safer, more repetitive), above 1 flattens.
    seed: a private torch.Generator for reproducible samples (None: torch's global RNG).
    """

    def __init__(self, temperature: float = 1.0, top_k: int = 0, seed: int | None = None):
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature} (for argmax decoding use greedy)")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0: no limit), got {top_k}")
        self.temperature, self.top_k = float(temperature), int(top_k)
        self.generator = None
        if seed is not None:
            self.generator = torch.Generator().manual_seed(seed)

    def select(self, logits: torch.Tensor) -> Selection:
        logits = logits.float() / self.temperature  # (N, V)
        if 0 < self.top_k < logits.shape[-1]:
            kth = logits.topk(self.top_k, dim=-1).values[:, -1:]  # (N, 1) the k-th best logit
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if self.generator is not None and probs.device.type != "cpu":
            probs = probs.cpu()  # a CPU generator draws on the CPU: the same text on every device
        tokens = torch.multinomial(probs, 1, generator=self.generator).squeeze(1)  # (N,)
        return Selection(tokens.to(logits.device))

    def __repr__(self) -> str:
        return f"Sample(temperature={self.temperature}, top_k={self.top_k})"


def make_strategy(greedy: bool = False, temperature: float = 1.0, top_k: int = 0,
                  seed: int | None = None) -> DecodeStrategy:
    """The char-rnn flags as a strategy: greedy wins; else sampling at `temperature`, top_k."""
    if greedy:
        return Greedy()
    return Sample(temperature=temperature, top_k=top_k, seed=seed)


def reorder_state(state, rows: torch.Tensor | None):
    """Pick rows of every (layers, N, H) state tensor (beam search); None leaves it alone."""
    if rows is None or state is None:
        return state
    if isinstance(state, torch.Tensor):
        return state.index_select(1, rows)
    return tuple(reorder_state(s, rows) for s in state)


@torch.inference_mode()
def generate(model, prime: torch.Tensor, length: int, strategy: DecodeStrategy,
             state=None, first_allowed: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """Yield `length` tokens (each (N,)) continuing `prime`, one model step per token.

    model: has `forward(tokens (N, L), state) -> (logits (N, L, V), state)` and
        `step(tokens (N,), state) -> (logits (N, V), state)` (e.g. LanguageModel).
    prime: (N, P) token ids, P >= 1, on the model's device: the text to continue.
    state: the model state before the prime (None: zeros).
    first_allowed: (V,) bool, the tokens the first choice is limited to (None: all), e.g.
        for token healing: those that begin with the prime's last, held-back piece.
    """
    if prime.dim() != 2 or prime.shape[1] < 1:
        raise ValueError(f"prime must be (N, P) token ids with P >= 1, got shape {tuple(prime.shape)}")
    was_training = model.training
    model.eval()
    try:
        logits, state = model(prime, state)  # the prime once, in one fused pass
        logits = logits[:, -1]  # (N, V)
        if first_allowed is not None:
            logits = logits.masked_fill(~first_allowed.to(logits.device), float("-inf"))
        for i in range(length):
            chosen = strategy.select(logits)
            state = reorder_state(state, chosen.reorder)
            yield chosen.tokens
            if i + 1 < length:
                logits, state = model.step(chosen.tokens, state)
    finally:
        model.train(was_training)
