"""Attention over encoder states: additive (Bahdanau), dot and general (Luong).

For a decoder query f (N, Hq) and encoder states e_1..e_S (N, S, He):

    additive (Bahdanau et al. 2015): g(f, e_i) = v^T tanh(W_f f + W_e e_i)
    dot      (Luong et al. 2015):    g(f, e_i) = f^T e_i             (needs Hq = He)
    general  (Luong et al. 2015):    g(f, e_i) = f^T W e_i

    a_i = softmax_i g(f, e_i) over the real (unpadded) positions, c = sum_i a_i e_i

Padded positions get a score of -inf before the softmax, so their weight is exactly 0.
The key side (W_e e_i, or W e_i) does not depend on the query: `keys(memory)` computes
it once per source, and every decoder step reuses it.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

ATTENTION_KINDS = ("additive", "dot", "general")


class Attention(nn.Module):
    """Scores, weights and context vector of one attention kind.

    kind: "additive", "dot" or "general".
    query_size: Hq, the decoder state size; memory_size: He, the encoder state size.
    attention_size: the hidden size of the additive scorer (default: query_size).
    """

    def __init__(self, kind: Literal["additive", "dot", "general"], query_size: int, memory_size: int,
                 attention_size: int | None = None):
        super().__init__()
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"unknown attention {kind!r}: expected one of {', '.join(ATTENTION_KINDS)}")
        if kind == "dot" and query_size != memory_size:
            raise ValueError(f"dot attention needs the decoder size ({query_size}) to equal the encoder "
                             f"state size ({memory_size}); use 'general' or 'additive' instead")
        self.kind, self.query_size, self.memory_size = kind, query_size, memory_size
        if kind == "additive":
            size = attention_size or query_size
            self.query_proj = nn.Linear(query_size, size, bias=False)
            self.memory_proj = nn.Linear(memory_size, size)
            self.v = nn.Linear(size, 1, bias=False)
        elif kind == "general":
            self.memory_proj = nn.Linear(memory_size, query_size, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        """The query-independent part of the scores: memory (N, S, He) -> (N, S, K)."""
        return memory if self.kind == "dot" else self.memory_proj(memory)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor,
                keys: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Context and weights for queries at one or many decoder steps.

        query: (N, Hq) or (N, T, Hq); memory: (N, S, He); mask: (N, S) bool, True at
        real positions; keys: `self.keys(memory)` if already computed.
        Returns context (N, He) or (N, T, He) and weights (N, S) or (N, T, S), each row
        summing to 1 over the real positions and exactly 0 at padded ones.
        """
        one_step = query.dim() == 2
        if one_step:
            query = query.unsqueeze(1)  # (N, 1, Hq)
        keys = self.keys(memory) if keys is None else keys  # (N, S, K)
        if self.kind == "additive":
            hidden = torch.tanh(self.query_proj(query).unsqueeze(2) + keys.unsqueeze(1))  # (N, T, S, A)
            scores = self.v(hidden).squeeze(-1)  # (N, T, S)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))  # (N, T, S)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (N, T, S)
        context = torch.bmm(weights, memory)  # (N, T, He)
        if one_step:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, query_size={self.query_size}, memory_size={self.memory_size}"
