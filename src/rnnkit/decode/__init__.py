"""Decoding: token strategies with one interface (`select(logits) -> Selection`), the
language-model generator, and whole-sequence search (greedy, sampling, beam) for
models with a step function (rnnkit.decode.search)."""
from .beam import BeamSearch
from .sampling import DecodeStrategy, Greedy, Sample, Selection, generate, make_strategy, reorder_state
from .search import Hypothesis, decode, select_rows

__all__ = ["DecodeStrategy", "Greedy", "Sample", "Selection", "generate", "make_strategy", "reorder_state",
           "BeamSearch", "Hypothesis", "decode", "select_rows"]
