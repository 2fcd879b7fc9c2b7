"""kNN monitor: ``knn_predict`` must give the reference implementation's scores bit for bit.

The reference below is the plain implementation (normalise, one matmul per
chunk, full ``topk``, weighted votes). Any speed-up of ``knn_predict`` (see
``benchmarks/bench_knn.py``) has to keep these tests passing with
``torch.equal``, ties and duplicate features included.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from simclr_lite.errors import ConfigError
from simclr_lite.evaluate import knn_accuracy, knn_predict


@torch.no_grad()
def knn_predict_reference(train_features, train_labels, test_features, k=200, temperature=0.1,
                          num_classes=None, chunk_size=2048):
    """The original knn_predict: normalise, one matmul per chunk, full topk, weighted votes."""
    num_classes = num_classes or int(train_labels.max()) + 1
    k = min(k, len(train_features))
    bank = F.normalize(train_features.float(), dim=1)
    labels = train_labels.to(bank.device)
    scores = []
    for i in range(0, len(test_features), chunk_size):
        q = F.normalize(test_features[i:i + chunk_size].float().to(bank.device), dim=1)
        top_sim, top_idx = (q @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(q), num_classes, device=bank.device)
        votes.scatter_add_(1, labels[top_idx], (top_sim / temperature).exp())
        scores.append(votes)
    return torch.cat(scores)


def clustered(n_train: int, n_test: int, d: int, classes: int, g: torch.Generator):
    """Train and test features around one random centre per class (like a trained encoder's), with labels."""
    centres = torch.randn(classes, d, generator=g)
    out = []
    for n in (n_train, n_test):
        y = torch.randint(0, classes, (n,), generator=g)
        out += [centres[y] + 1.5 * torch.randn(n, d, generator=g), y]
    return out


@pytest.mark.parametrize("n_train,n_test,d,k,classes,chunk", [
    (5000, 700, 64, 200, 10, 256),     # the monitor's k; several chunks and a partial one
    (3001, 300, 32, 20, 7, 2048),      # odd sizes, one chunk
    (1000, 100, 16, 200, 10, 64),      # k a fifth of the bank
    (400, 50, 8, 1, 3, 16),            # k = 1
    (50, 20, 8, 200, 4, 2048),         # k > N: clipped to N
])
def test_knn_predict_identical_to_reference(n_train, n_test, d, k, classes, chunk):
    g = torch.Generator().manual_seed(n_train + k)
    xtr, ytr, xte, _ = clustered(n_train, n_test, d, classes, g)
    new = knn_predict(xtr, ytr, xte, k=k, temperature=0.1, chunk_size=chunk)
    ref = knn_predict_reference(xtr, ytr, xte, k=k, temperature=0.1, chunk_size=chunk)
    assert torch.equal(new, ref)


def test_knn_predict_identical_with_ties_and_duplicates():
    """Duplicate training features (exact ties, also at the k-th place) and low-precision values."""
    g = torch.Generator().manual_seed(1)
    base = torch.randint(-2, 3, (600, 6), generator=g).float()   # few distinct directions: many ties
    xtr = torch.cat([base, base[:300], base[:100]])
    ytr = torch.randint(0, 5, (len(xtr),), generator=g)
    xte = torch.randint(-2, 3, (200, 6), generator=g).float()
    for k in (1, 7, 50, 200):
        assert torch.equal(knn_predict(xtr, ytr, xte, k=k), knn_predict_reference(xtr, ytr, xte, k=k))


def test_knn_non_finite_features_like_reference():
    g = torch.Generator().manual_seed(3)
    xtr, ytr, xte, _ = clustered(2000, 64, 16, 4, g)
    xtr[7, 3] = float("nan")
    xte[5, 0] = float("inf")
    new, ref = knn_predict(xtr, ytr, xte, k=50), knn_predict_reference(xtr, ytr, xte, k=50)
    assert torch.equal(new.isnan(), ref.isnan()) and torch.equal(new.nan_to_num(), ref.nan_to_num())


def test_knn_accuracy_and_errors():
    g = torch.Generator().manual_seed(4)
    xtr, ytr, xte, yte = clustered(3000, 500, 32, 5, g)
    acc = knn_accuracy(xtr, ytr, xte, yte, k=20)
    ref = (knn_predict_reference(xtr, ytr, xte, k=20).argmax(1) == yte).float().mean().item()
    assert acc == ref and acc > 0.5
    with pytest.raises(ConfigError):
        knn_predict(xtr, ytr, xte, k=0)
