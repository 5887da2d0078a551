"""Metrics for generated text against references: exact match, BLEU, chrF, ROUGE-L.

- exact match: the share of hypotheses equal to their reference, character for character.
- BLEU (Papineni et al. 2002) and chrF (Popović 2015): corpus-level, computed by sacrebleu
  (BLEU over sacrebleu's 13a word tokens, or over characters with level="char", where a
  whole output is one word, e.g. "1769"; chrF with character 6-grams, beta 2), 0..100.
- ROUGE-L (Lin 2004): the F-measure of the longest common subsequence of tokens, by
  rouge-score, averaged over sentences, 0..1. Its default tokeniser drops every character
  outside a-z0-9 ("zéro" would become "z ro"), so tokens here are whitespace-separated
  words, lowercased, or characters with level="char".

sacrebleu and rouge-score come with `pip install 'rnnkit[translate]'`.
"""
from __future__ import annotations

from typing import Sequence


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Share (0..1) of hypotheses identical to their reference."""
    _check(hypotheses, references)
    return sum(h == r for h, r in zip(hypotheses, references)) / len(references)


def bleu(hypotheses: Sequence[str], references: Sequence[str], level: str = "word") -> float:
    """Corpus BLEU (0..100) by sacrebleu, one reference per hypothesis; level "word" (13a) or "char"."""
    import sacrebleu

    _check(hypotheses, references)
    tokenize = {"word": "13a", "char": "char"}[level]
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize=tokenize).score)


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (0..100) by sacrebleu, one reference per hypothesis."""
    import sacrebleu

    _check(hypotheses, references)
    return float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score)


class _Tokens:
    """rouge-score tokeniser: lowercased words split on whitespace (accents kept), or characters."""

    def __init__(self, level: str):
        self.level = level

    def tokenize(self, text: str) -> list[str]:
        return list(text) if self.level == "char" else text.lower().split()


def rouge_l(hypotheses: Sequence[str], references: Sequence[str], level: str = "word") -> float:
    """Mean ROUGE-L F-measure (0..1) by rouge-score over words (whitespace) or characters."""
    from rouge_score import rouge_scorer

    _check(hypotheses, references)
    if level not in ("word", "char"):
        raise ValueError(f"level must be 'word' or 'char', got {level!r}")
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Tokens(level))
    return sum(scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references)) / len(references)


def text_metrics(hypotheses: Sequence[str], references: Sequence[str], level: str = "word") -> dict[str, float]:
    """{"exact_match", "bleu", "chrf", "rouge_l"} of hypotheses against references (tokens: level)."""
    return {"exact_match": exact_match(hypotheses, references), "bleu": bleu(hypotheses, references, level),
            "chrf": chrf(hypotheses, references), "rouge_l": rouge_l(hypotheses, references, level)}


def _check(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references: one reference each")
    if not references:
        raise ValueError("no sentences to score")
