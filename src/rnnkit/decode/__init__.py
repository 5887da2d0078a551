"""Decoding: strategies with one interface (`select(logits) -> Selection`) and the generator."""
from .sampling import DecodeStrategy, Greedy, Sample, Selection, generate, make_strategy, reorder_state

__all__ = ["DecodeStrategy", "Greedy", "Sample", "Selection", "generate", "make_strategy", "reorder_state"]
