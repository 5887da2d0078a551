"""Evaluation metrics."""
from .lm import bits_per_char, bits_per_token, lm_metrics, perplexity

__all__ = ["perplexity", "bits_per_token", "bits_per_char", "lm_metrics"]
from .classification import accuracy, classification_metrics, confusion_matrix, f1, iou, precision, recall  # noqa: E402,F401
from .forecast import coverage, crps_gaussian, crps_samples, mae, mase, pinball, rmse, smape  # noqa: E402,F401
