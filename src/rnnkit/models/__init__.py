"""Models: recurrent language model and the n-gram baseline."""
from .lm import LanguageModel
from .ngram import KneserNeyLM, fit_mix_weight, mix_log_probs

__all__ = ["LanguageModel", "KneserNeyLM", "fit_mix_weight", "mix_log_probs"]
from .classifier import Pooling, SequenceClassifier, SequenceEncoder, SequenceEnsemble, SequenceTagger, WindowMLP  # noqa: E402,F401
from .forecaster import Forecaster, MLPForecaster, Mixture, MixtureDensityHead, Point, PointHead  # noqa: E402,F401
