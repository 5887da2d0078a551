"""Recurrent language model: Embedding → Recurrent → dropout → Linear (softmax over the vocabulary).

    e_t = dropout(E[x_t])                      (N, L, E)
    h_t = Recurrent(e)_t                       (N, L, H)   any cell by name, stacked, dropout between layers
    logits_t = W dropout(h_t) + b              (N, L, V)   W = E (tied) when tie_weights and E = H

Dropout acts on the non-recurrent connections only (Zaremba et al. 2014): the
embedding output, between layers (inside `Recurrent`) and before the output layer.
Weight tying (Press & Wolf 2017; Inan et al. 2017) shares the embedding matrix with
the output layer.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import Dropout, Recurrent

State = tuple[torch.Tensor, ...]


class LanguageModel(nn.Module):
    """Next-token model over a vocabulary of V symbols.

    Args:
        vocab_size: V.
        cell: any rnnkit cell name (`lstm`, `gru`, `rnn`, `irnn`, ...); cell options
            (`variant=`, `nonlinearity=`, `forget_bias=`, ...) go in **cell_options.
        hidden_size: H. num_layers: stacked layers.
        embedding_size: E (default H).
        dropout: on the embedding output, between layers and before the output layer.
        tie_weights: share the embedding matrix with the output layer (needs E = H).
        residual, skip, variational: passed to `Recurrent`.
    """

    def __init__(self, vocab_size: int, cell: str = "lstm", hidden_size: int = 256, num_layers: int = 1,
                 embedding_size: int | None = None, dropout: float = 0.0, tie_weights: bool = False,
                 residual: bool = False, skip: int = 0, variational: bool = False, **cell_options):
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        embedding_size = embedding_size or hidden_size
        if tie_weights and embedding_size != hidden_size:
            raise ValueError(f"tie_weights needs embedding_size = hidden_size, got embedding_size="
                             f"{embedding_size} and hidden_size={hidden_size}")
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.rnn = Recurrent(cell, embedding_size, hidden_size, num_layers=num_layers, dropout=dropout,
                             residual=residual, skip=skip, variational=variational, **cell_options)
        self.drop = Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            self.head.weight = self.embedding.weight
        self.tie_weights = tie_weights
        nn.init.normal_(self.embedding.weight, std=embedding_size ** -0.5 if tie_weights else 1.0)
        nn.init.zeros_(self.head.bias)

    def initial_state(self, batch_size: int, device=None) -> State:
        """Zeros: a tuple of (layers, N, H) tensors."""
        return self.rnn.initial_state(batch_size, dtype=self.head.weight.dtype, device=device)

    def forward(self, tokens: torch.Tensor, state: State | None = None):
        """tokens (N, L) integer ids -> (logits (N, L, V), state); state as `Recurrent`'s."""
        x = self.drop(self.embedding(tokens.long()))  # (N, L, E)
        out, state = self.rnn(x, state)  # (N, L, H)
        return self.head(self.drop(out)), state  # (N, L, V)

    def step(self, tokens: torch.Tensor, state: State | None = None):
        """One step: tokens (N,) -> (logits (N, V), state). Constant work per token."""
        x = self.embedding(tokens.long())  # (N, E); dropout is off outside training anyway
        out, state = self.rnn.step(x, state)  # (N, H)
        return self.head(out), state  # (N, V)
