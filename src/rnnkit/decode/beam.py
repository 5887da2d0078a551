"""Beam search over a step function, batched over sources.

Keeps, for each of N sources, the `beam_size` most probable prefixes. At each step
every live prefix is extended by every token, the candidates are ranked by their
summed log-probability, and the best `beam_size` that do not end are kept; those
that end with the end token move to the source's list of finished hypotheses.
A source is done when it holds `n_best` finished hypotheses and no live prefix can
still beat the n-th of them (log-probabilities only fall as a prefix grows, so a
prefix's best possible score is bounded); at `max_length` the live prefixes join
the list unfinished.

Finished hypotheses are ranked by log p(y) / |y|^alpha (`length_penalty` alpha;
0: raw log-probability, 1: per-token average), |y| counting the end token, so a
short hypothesis is not preferred only for having fewer factors below one.

Ties are broken by position: the lower beam, then the lower token id, wins, so a
beam of width 1 makes the same choices as greedy argmax (which takes the lowest id).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .search import Hypothesis, StepFunction, check_search_arguments, mask_token  # noqa: F401


class BeamSearch:
    """Beam search of width `beam_size` (a strategy for `rnnkit.decode.search.decode`).

    beam_size: k >= 1 prefixes kept per source (k = 1 is greedy).
    length_penalty: alpha >= 0 in the ranking score log p(y) / |y|^alpha.
    n_best: hypotheses returned per source, 1..beam_size (default: 1).
    """

    def __init__(self, beam_size: int = 5, length_penalty: float = 0.0, n_best: int = 1):
        if not isinstance(beam_size, int) or beam_size < 1:
            raise ValueError(f"beam width must be a whole number >= 1, got {beam_size!r}")
        if not 1 <= n_best <= beam_size:
            raise ValueError(f"n_best must be in 1..beam width ({beam_size}), got {n_best}")
        if not length_penalty >= 0:
            raise ValueError(f"length_penalty must be >= 0, got {length_penalty}")
        self.beam_size, self.length_penalty, self.n_best = beam_size, float(length_penalty), n_best

    def __repr__(self) -> str:
        return f"BeamSearch(beam_size={self.beam_size}, length_penalty={self.length_penalty}, n_best={self.n_best})"

    def score(self, log_prob: float, length: int) -> float:
        """The ranking score of a hypothesis of `length` tokens (end token included)."""
        return log_prob / max(length, 1) ** self.length_penalty if self.length_penalty else log_prob

    @torch.no_grad()
    def search(self, step: StepFunction, state: Any, batch_size: int, *, bos: int, eos: int, max_length: int,
               min_length: int = 0, reorder: Callable[[Any, torch.Tensor], Any]) -> list[list[Hypothesis]]:
        """The n-best hypotheses of each of `batch_size` sources, best first.

        step: (tokens (B,), state) -> (logits or log-probs (B, V), state); normalised here
            with log_softmax, so log-probability tables pass through unchanged.
        state: the state of the N sources; `reorder(state, rows)` picks rows (B,) of it.
        bos / eos: the start token fed first / the end token.
        max_length: at most this many tokens per hypothesis (end token included).
        min_length: the end token is forbidden before this many tokens have been produced.
        """
        check_search_arguments(batch_size, max_length, min_length)
        N, K = batch_size, self.beam_size
        device = _device_of(state)
        state = reorder(state, torch.arange(N, device=device).repeat_interleave(K))  # (N*K) rows
        tokens = torch.full((N * K,), bos, dtype=torch.long, device=device)
        scores = torch.full((N, K), float("-inf"), device=device)
        scores[:, 0] = 0.0  # one live prefix at first: the others would only repeat it
        history = torch.zeros((N * K, 0), dtype=torch.long, device=device)
        finished: list[list[Hypothesis]] = [[] for _ in range(N)]
        done = [False] * N
        for t in range(max_length):
            logits, state = step(tokens, state)
            log_probs = torch.log_softmax(logits.float(), dim=-1)  # (N*K, V)
            if t < min_length:
                log_probs = mask_token(log_probs, eos)
            V = log_probs.shape[-1]
            candidates = (scores.unsqueeze(-1) + log_probs.view(N, K, V)).view(N, K * V)
            # stable descending sort: among equal scores the lower (beam, token) comes first
            order = torch.sort(candidates, dim=-1, descending=True, stable=True)
            top_scores = order.values[:, : 2 * K].tolist()  # at most K of 2K candidates end: K live remain
            top_index = order.indices[:, : 2 * K].tolist()
            rows, next_tokens, next_scores = [], [], []
            for n in range(N):
                live = []
                for value, flat in zip(top_scores[n], top_index[n]):
                    if done[n] or len(live) == K or value == float("-inf"):
                        break
                    beam, token = divmod(flat, V)
                    if token == eos:
                        prefix = history[n * K + beam].tolist()
                        finished[n].append(Hypothesis(prefix, value, self.score(value, len(prefix) + 1), True))
                    else:
                        live.append((n * K + beam, token, value))
                if not done[n] and len(finished[n]) >= self.n_best:
                    done[n] = self._settled(finished[n], [value for _, _, value in live], max_length)
                live += [(n * K, eos, float("-inf"))] * (K - len(live))  # dead rows keep the shape
                for row, token, value in live:
                    rows.append(row)
                    next_tokens.append(token)
                    next_scores.append(value if not done[n] else float("-inf"))
            if all(done):
                break
            rows_t = torch.tensor(rows, device=device)
            tokens = torch.tensor(next_tokens, device=device)
            scores = torch.tensor(next_scores, device=device).view(N, K)
            history = torch.cat([history.index_select(0, rows_t), tokens.unsqueeze(1)], dim=1)  # (N*K, t+1)
            state = reorder(state, rows_t)
        for n in range(N):  # out of length: the live prefixes are hypotheses too, unfinished
            if not done[n]:
                for k in range(K):
                    value = float(scores[n, k])
                    if value > float("-inf"):
                        prefix = history[n * K + k].tolist()
                        finished[n].append(Hypothesis(prefix, value, self.score(value, len(prefix)), False))
        return [sorted(hyps, key=_rank)[: self.n_best] for hyps in finished]

    def _settled(self, finished: list[Hypothesis], live: list[float], max_length: int) -> bool:
        """True when no live prefix can still enter the n-best list of finished hypotheses.

        A prefix's log-probability only falls as it grows, so its best possible score is
        its log p now, divided by the largest length penalty (max_length^alpha).
        """
        kth = sorted((h.score for h in finished), reverse=True)[self.n_best - 1]
        best_live = max(live, default=float("-inf"))
        return self.score(best_live, max_length) <= kth if best_live > float("-inf") else True


def _rank(h: Hypothesis):
    return (-h.score, not h.finished, len(h.tokens))


def _device_of(state: Any) -> torch.device:
    if isinstance(state, torch.Tensor):
        return state.device
    if isinstance(state, (tuple, list)):
        for s in state:
            if s is not None:
                return _device_of(s)
    if isinstance(state, dict):
        return _device_of(list(state.values()))
    return torch.device("cpu")


__all__ = ["BeamSearch"]
