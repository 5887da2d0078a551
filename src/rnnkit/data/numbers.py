"""Number words translation pairs from num2words: "four hundred and twelve" -> "quatre cent douze".

The numbers 0..upper-1 (default 999,999) are split once, by number, with a seeded
permutation: `test_fraction` of them are test numbers, `valid_fraction` validation
numbers, the rest training numbers, so no test number is ever seen in training.
Each split then draws its examples stratified by digit count (as many 1-, 2-, ..., 6-digit
numbers as there are, up to an equal share each), because drawn uniformly almost
every number would have six digits and "twelve" would never be seen.

num2words is offline (its tables ship with the package); nothing is downloaded.
"""
from __future__ import annotations

import numpy as np

from .pairs import PairSet

SPLITS = ("train", "valid", "test")


def split_numbers(upper: int, valid_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Disjoint pools of the numbers 0..upper-1: {"train", "valid", "test"} -> sorted arrays."""
    if upper < 10:
        raise ValueError(f"upper must be at least 10, got {upper}")
    perm = np.random.default_rng(seed).permutation(upper)
    n_test, n_valid = int(round(upper * test_fraction)), int(round(upper * valid_fraction))
    return {"test": np.sort(perm[:n_test]), "valid": np.sort(perm[n_test: n_test + n_valid]),
            "train": np.sort(perm[n_test + n_valid:])}


def sample_by_digits(pool: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` numbers of `pool` without repetition, spread evenly over digit counts (all of a count if fewer)."""
    rng = np.random.default_rng(seed)
    digits = np.char.str_len(pool.astype(str))
    counts = sorted(set(digits.tolist()))
    chosen, left = [], min(size, len(pool))
    for k, d in enumerate(counts):  # small counts first: what they cannot fill passes to the larger ones
        bucket = pool[digits == d]
        take = min(left // (len(counts) - k), len(bucket))
        chosen.append(rng.choice(bucket, take, replace=False))
        left -= take
    out = np.concatenate(chosen)
    return out[rng.permutation(len(out))]


def number_words(number: int, lang: str) -> str:
    """num2words(number, lang=lang), with a clear error for a language num2words lacks."""
    from num2words import num2words

    try:
        return num2words(int(number), lang=lang)
    except NotImplementedError:
        raise ValueError(f"num2words has no language {lang!r} (try en, fr, de, es, it, pt, nl)") from None


def make_number_pairs(numbers: np.ndarray, source_lang: str, target_lang: str, source_level: str = "word",
                      target_level: str = "word") -> PairSet:
    """Pairs (words of n in source_lang, words of n in target_lang) for each n of `numbers`."""
    sources = [number_words(n, source_lang) for n in numbers]
    targets = [number_words(n, target_lang) for n in numbers]
    return PairSet.from_texts(sources, targets, source_level, target_level)
