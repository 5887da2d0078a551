"""Decoding whole sequences: greedy, sampling and beam search behind one function.

    hyps = decode(step, state, N, Greedy(), bos=2, eos=3, max_length=30, reorder=model.reorder_state)
    hyps = decode(step, state, N, Sample(temperature=0.8, top_k=10, seed=0), bos=2, eos=3, max_length=30)
    hyps = decode(step, state, N, BeamSearch(beam_size=5, length_penalty=1.0, n_best=3), bos=2, eos=3, ...)

`hyps[n]` is the list of hypotheses for source n, best first (one for greedy and
sampling, `n_best` for beam search): `Hypothesis(tokens, log_prob, score, finished)`
with the tokens produced (start and end tokens left out), their summed
log-probability (the end token's included), the ranking score and whether the end
token was produced before `max_length`.

A model takes part by offering a step function
`step(tokens (B,), state) -> (logits (B, V), state)`: the encoder-decoder's
`decode_step`, or a language model's `step` (LanguageModel.step; then the state
is a tuple of (layers, B, H) tensors and the default `reorder` fits). `reorder(state,
rows)` picks rows of the state: beam search uses it to expand N sources to N·k
rows and to follow the surviving prefixes.

Greedy and sampling reuse the token strategies of rnnkit.decode.sampling (`Greedy`,
`Sample`), so `rnnkit sample` for a language model and `rnnkit translate` choose
tokens the same way.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol

import torch

from .sampling import DecodeStrategy, reorder_state


class Hypothesis(NamedTuple):
    """One decoded sequence: tokens (without start/end), log p, ranking score, ended with the end token."""

    tokens: list[int]
    log_prob: float
    score: float
    finished: bool


class StepFunction(Protocol):
    def __call__(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """tokens (B,) the previous token of each row -> (logits (B, V), the new state)."""


def check_search_arguments(batch_size: int, max_length: int, min_length: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if not 0 <= min_length <= max_length:
        raise ValueError(f"min_length must be in 0..max_length ({max_length}), got {min_length}")


def mask_token(log_probs: torch.Tensor, token: int) -> torch.Tensor:
    """`log_probs` (B, V) with column `token` set to -inf (a token that may not be chosen now)."""
    log_probs = log_probs.clone()
    log_probs[:, token] = float("-inf")
    return log_probs


@torch.no_grad()
def decode(step: StepFunction, state: Any, batch_size: int, strategy, *, bos: int, eos: int, max_length: int,
           min_length: int = 0, reorder: Callable[[Any, torch.Tensor], Any] = reorder_state
           ) -> list[list[Hypothesis]]:
    """Decode `batch_size` sequences with `strategy` (Greedy, Sample or BeamSearch).

    step: (tokens (B,), state) -> (logits (B, V), state).
    state: the decoder state of the N = batch_size rows before the start token.
    bos, eos: start token (fed first) and end token (stops a row).
    max_length: tokens per sequence at most (end token included); min_length: no end
        token before this many tokens.
    reorder: (state, rows (B,)) -> the state of those rows (default: tuples of
        (layers, N, H) tensors, the recurrent state layout).
    Returns one list of hypotheses per row, best first.
    """
    if hasattr(strategy, "search"):  # beam search keeps several prefixes per row
        return strategy.search(step, state, batch_size, bos=bos, eos=eos, max_length=max_length,
                               min_length=min_length, reorder=reorder)
    if not isinstance(strategy, DecodeStrategy):
        raise TypeError(f"strategy must be Greedy, Sample or BeamSearch, got {type(strategy).__name__}")
    check_search_arguments(batch_size, max_length, min_length)
    return [[h] for h in _one_path(step, state, batch_size, strategy, bos, eos, max_length, min_length)]


def _one_path(step, state, N, strategy: DecodeStrategy, bos, eos, max_length, min_length) -> list[Hypothesis]:
    """Greedy or sampled decoding: one token per row per step, rows stop at the end token."""
    tokens = None
    out: list[list[int]] = [[] for _ in range(N)]
    log_prob = [0.0] * N
    ended = [False] * N
    for t in range(max_length):
        if tokens is None:
            device = _first_tensor(state).device if _first_tensor(state) is not None else torch.device("cpu")
            tokens = torch.full((N,), bos, dtype=torch.long, device=device)
        logits, state = step(tokens, state)
        log_probs = torch.log_softmax(logits.float(), dim=-1)  # (N, V)
        if t < min_length:
            log_probs = mask_token(log_probs, eos)
        tokens = strategy.select(log_probs).tokens  # (N,) log-probs are logits up to a constant per row
        chosen = log_probs.gather(1, tokens.unsqueeze(1)).squeeze(1).tolist()
        for n, (token, lp) in enumerate(zip(tokens.tolist(), chosen)):
            if ended[n]:
                continue
            log_prob[n] += lp
            if token == eos:
                ended[n] = True
            else:
                out[n].append(token)
        if all(ended):
            break
    return [Hypothesis(out[n], log_prob[n], log_prob[n], ended[n]) for n in range(N)]


def _first_tensor(state: Any) -> torch.Tensor | None:
    if isinstance(state, torch.Tensor):
        return state
    if isinstance(state, (tuple, list)):
        for s in state:
            found = _first_tensor(s)
            if found is not None:
                return found
    return None


def select_rows(state: Any, rows: torch.Tensor) -> Any:
    """Rows of a batch-first state: every tensor inside (tuples, lists) indexed on dimension 0."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.index_select(0, rows)
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(select_rows(s, rows) for s in state))
    return type(state)(select_rows(s, rows) for s in state)


__all__ = ["Hypothesis", "StepFunction", "decode", "select_rows", "mask_token"]
