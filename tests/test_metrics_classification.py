"""rnnkit.metrics.classification against scikit-learn on random labels, and the edge cases."""
import numpy as np
import pytest

sklearn_metrics = pytest.importorskip("sklearn.metrics")

from rnnkit.metrics.classification import (accuracy, classification_metrics, confusion_matrix, f1,  # noqa: E402
                                           format_confusion, iou, precision, recall, save_confusion_png)

CASES = [(seed, k, n) for seed, (k, n) in enumerate([(2, 50), (3, 7), (5, 200), (9, 40), (12, 30), (4, 1)])]


def _random_labels(seed, k, n):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    # predictions that are right half the time, so every cell of the matrix gets used
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, k, n))
    return y_true, y_pred


@pytest.mark.parametrize("seed,k,n", CASES)
def test_matches_scikit_learn_on_random_labels(seed, k, n):
    y_true, y_pred = _random_labels(seed, k, n)
    cm = confusion_matrix(y_true, y_pred, num_classes=k)
    labels = np.arange(k)
    np.testing.assert_array_equal(cm, sklearn_metrics.confusion_matrix(y_true, y_pred, labels=labels))
    assert accuracy(cm) == pytest.approx(sklearn_metrics.accuracy_score(y_true, y_pred))
    for average in ("macro", "micro", None):
        kw = dict(average=average, zero_division=0)
        # macro without a label list: scikit-learn averages over the labels in y_true or y_pred, as we do
        if average is None:
            kw["labels"] = labels
        np.testing.assert_allclose(precision(cm, average), sklearn_metrics.precision_score(y_true, y_pred, **kw))
        np.testing.assert_allclose(recall(cm, average), sklearn_metrics.recall_score(y_true, y_pred, **kw))
        np.testing.assert_allclose(f1(cm, average), sklearn_metrics.f1_score(y_true, y_pred, **kw))
        np.testing.assert_allclose(iou(cm, average), sklearn_metrics.jaccard_score(y_true, y_pred, **kw))


def test_counts_summed_batch_by_batch_equal_the_whole():
    y_true, y_pred = _random_labels(7, 6, 300)
    whole = confusion_matrix(y_true, y_pred, 6)
    parts = sum(confusion_matrix(y_true[i:i + 32], y_pred[i:i + 32], 6) for i in range(0, 300, 32))
    np.testing.assert_array_equal(parts, whole)
    m = classification_metrics(parts)
    assert m["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(y_true, y_pred, average="macro"))
    assert set(m) == {"accuracy", "macro_precision", "macro_recall", "macro_f1", "mean_iou"}


def test_ignore_index_and_step_labels():
    y_true = np.array([[0, 1, -100], [2, -100, -100]])
    y_pred = np.array([[0, 2, 1], [2, 0, 0]])
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.sum() == 3 and accuracy(cm) == pytest.approx(2 / 3)


def test_edge_cases():
    assert accuracy(np.zeros((3, 3))) == 0.0 and f1(np.zeros((3, 3))) == 0.0
    perfect = confusion_matrix([0, 1, 2], [0, 1, 2], 4)  # class 3 absent everywhere: not in the macro mean
    assert f1(perfect) == 1.0 and iou(perfect) == 1.0
    with pytest.raises(ValueError, match="differ in size"):
        confusion_matrix([0, 1], [0])
    with pytest.raises(ValueError, match="0..1"):
        confusion_matrix([0, 2], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match="average"):
        f1(perfect, average="weighted")


def test_text_and_png(tmp_path):
    cm = confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], 3)
    text = format_confusion(cm, ["a", "b", "c"])
    assert "rows: true class" in text and "0.500" in text
    pytest.importorskip("matplotlib")
    path = save_confusion_png(cm, tmp_path / "cm.png", ["a", "b", "c"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
