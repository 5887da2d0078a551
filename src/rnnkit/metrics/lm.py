"""Language-model metrics from the mean negative log-likelihood in nats per token.

    perplexity      = exp(nats)
    bits per token  = nats / ln 2        (bits per character for a char LM, per word for a word LM)
    bits per char   = nats · tokens / (ln 2 · characters)   (a word LM measured per character)
"""
from __future__ import annotations

import math

LN2 = math.log(2.0)


def perplexity(nats_per_token: float) -> float:
    """exp(mean NLL); inf when the exponent overflows."""
    try:
        return math.exp(nats_per_token)
    except OverflowError:
        return math.inf


def bits_per_token(nats_per_token: float) -> float:
    """Mean NLL in bits: nats / ln 2."""
    return nats_per_token / LN2


def bits_per_char(total_nats: float, num_chars: int) -> float:
    """Total NLL of a text (nats) spread over its characters, in bits per character."""
    if num_chars <= 0:
        raise ValueError(f"num_chars must be > 0, got {num_chars}")
    return total_nats / (LN2 * num_chars)


def lm_metrics(nats_per_token: float, unit: str = "char") -> dict[str, float]:
    """{'loss': nats/token, 'perplexity', 'bits_per_<unit>'} for unit 'char' or 'word'."""
    return {"loss": nats_per_token, "perplexity": perplexity(nats_per_token),
            f"bits_per_{unit}": bits_per_token(nats_per_token)}
