"""Embedding neighbours and pictures: cosine nearest neighbours of a token, and a 2-D
map (PCA or t-SNE, scikit-learn) of the most frequent tokens, labelled.

    matrix = embedding_matrix(model)                 # (V, E) the model's input embedding
    nearest(matrix, vocab, "self", k=10)             # [(token, cosine), ...] best first
    plot_embeddings(matrix, vocab, "emb.png", count=150, method="pca")
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.vocab import Vocab


def embedding_matrix(model: nn.Module) -> torch.Tensor:
    """The (V, E) weight of the model's input embedding (`model.embedding`, else its only nn.Embedding)."""
    found = getattr(model, "embedding", None)
    if not isinstance(found, nn.Embedding):
        found = [m for m in model.modules() if isinstance(m, nn.Embedding)]
        if len(found) != 1:
            raise ValueError(f"{type(model).__name__} has {len(found)} nn.Embedding layers; "
                             "expected one (or a `model.embedding`)")
        found = found[0]
    return found.weight.detach().float().cpu()


def nearest(matrix: torch.Tensor, vocab: Vocab, token: str, k: int = 10) -> list[tuple[str, float]]:
    """The k tokens whose embeddings have the highest cosine similarity with `token`'s
    (itself and the unknown symbol left out). matrix (V, E)."""
    ids = vocab.encode(token)
    if len(ids) != 1 or int(ids[0]) == 0:
        raise KeyError(f"{token!r} is not one token of the vocabulary ({len(vocab)} {vocab.kind}s)")
    i = int(ids[0])
    unit = nn.functional.normalize(matrix, dim=1)  # (V, E)
    cosine = unit @ unit[i]  # (V,)
    cosine[i] = -2.0
    cosine[0] = -2.0  # the unknown symbol
    top = cosine.topk(min(k, len(vocab) - 2))
    return [(vocab.token(int(j)), float(c)) for c, j in zip(top.values, top.indices)]


def frequent_ids(vocab: Vocab, count: int, counts: np.ndarray | None = None) -> list[int]:
    """Ids of the `count` most frequent tokens, by `counts` (V,) (token counts in some text)
    when given, else by the vocabulary's order: a word vocabulary is stored most frequent
    first (a character vocabulary is in code-point order, so pass counts for it)."""
    first = 2 if vocab.kind == "word" else 1  # skip <unk> (and <eol>)
    if counts is None:
        return list(range(first, min(first + count, len(vocab))))
    order = [int(i) for i in np.argsort(-np.asarray(counts), kind="stable") if i >= first and counts[i] > 0]
    return order[:count]


def project(points: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(n, E) -> (n, 2) by PCA or t-SNE (cosine metric)."""
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(points)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = max(2.0, min(30.0, (len(points) - 1) / 3))
        return TSNE(n_components=2, perplexity=perplexity, metric="cosine", init="pca",
                    random_state=seed).fit_transform(points)
    raise ValueError(f"unknown projection {method!r}: expected pca or tsne")


def plot_embeddings(matrix: torch.Tensor, vocab: Vocab, path, count: int = 150, method: str = "pca",
                    title: str = "", seed: int = 0, counts: np.ndarray | None = None) -> np.ndarray:
    """Draw the `count` most frequent tokens' embeddings in 2-D, labelled (frequency from
    `counts`, see frequent_ids); returns the (n, 2) points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = frequent_ids(vocab, count, counts)
    if len(ids) < 3:
        raise ValueError(f"the vocabulary has {len(vocab)} tokens; a map needs at least 3 besides the specials")
    xy = project(matrix[ids].numpy(), method, seed)
    fig, ax = plt.subplots(figsize=(9, 7), dpi=90)
    ax.scatter(xy[:, 0], xy[:, 1], s=6, color="#3060c0")
    for (x, y), i in zip(xy, ids):
        label = vocab.token(i)
        label = {"\n": "\\n", " ": "␣", "\t": "\\t"}.get(label, label)
        ax.annotate(label, (x, y), fontsize=7, alpha=0.85, xytext=(2, 2), textcoords="offset points")
    ax.set_title(title or f"{len(ids)} most frequent tokens, {method.upper()}", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return xy
