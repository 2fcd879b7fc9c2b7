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
from simclr_lite.evaluate import knn_accuracy, knn_predict, linear_eval


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


# ------------------------------------------------------ linear evaluation and fine-tuning (Tables 6-7)
def _scaled_clusters(seed: int):
    """5 overlapping Gaussian classes in 16 dimensions of unequal scales (so standardisation matters)."""
    g = torch.Generator().manual_seed(seed)
    centres = 0.7 * torch.randn(5, 16, generator=g)
    scale = torch.linspace(0.5, 3, 16)
    out = []
    for n in (600, 400):
        y = torch.randint(0, 5, (n,), generator=g)
        out += [(centres[y] + torch.randn(n, 16, generator=g)) * scale, y]
    return out


@pytest.mark.parametrize("seed", [0, 3])
def test_linear_eval_agrees_with_scikit_learns_logistic_regression(seed):
    """linear_eval is L2-regularised multinomial logistic regression on standardised features: with SGD
    weight decay wd, the optimum is scikit-learn's with C = 1 / (wd * n_train). Tolerance: top-1 within
    0.02 and >= 97% of the 400 test predictions the same (measured: within 0.0075 and >= 98.75% on
    seeds 0-3; the rest is SGD's finite schedule and its decay of the bias, which sklearn leaves free)."""
    from sklearn.linear_model import LogisticRegression

    xtr, ytr, xte, yte = _scaled_clusters(seed)
    wd = 1e-2
    kw = dict(epochs=300, lr=0.5, weight_decay=wd)
    ours = linear_eval(xtr, ytr, xte, yte, **kw)
    mean, std = xtr.mean(0), xtr.std(0) + 1e-6
    sk = LogisticRegression(C=1 / (wd * len(xtr)), max_iter=10000, tol=1e-10)
    sk.fit(((xtr - mean) / std).double().numpy(), ytr.numpy())
    pred = torch.from_numpy(sk.predict(((xte - mean) / std).double().numpy()))
    sk_top1 = (pred == yte).double().mean().item()
    assert 0.75 < sk_top1 < 0.97                      # overlapping classes: the boundary matters
    assert abs(ours["top1"] - sk_top1) <= 0.02, (ours, sk_top1)
    # scored against sklearn's predictions, linear_eval's top-1 is the fraction of predictions that agree
    assert linear_eval(xtr, ytr, xte, pred, **kw)["top1"] >= 0.97


def _stripes(n: int, g: torch.Generator):
    """Class 0: horizontal stripes, class 1: vertical, of random period, phase and two random colours, 16x16.
    Invariant to fine_tune's crops and flips; a random encoder's pooled features hardly tell them apart."""
    y = torch.randint(0, 2, (n,), generator=g)
    yy, xx = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    x = torch.empty(n, 3, 16, 16)
    for i in range(n):
        period, phase = int(torch.randint(2, 5, (1,), generator=g)), int(torch.randint(0, 4, (1,), generator=g))
        pattern = (((yy if y[i] == 0 else xx) + phase) // period % 2).float()
        c1, c2 = torch.rand(3, 1, 1, generator=g), torch.rand(3, 1, 1, generator=g)
        x[i] = c1 * pattern + c2 * (1 - pattern)
    x = x + 0.1 * torch.randn(x.shape, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), y


def test_fine_tune_beats_its_frozen_start():
    """Fine-tuning trains the encoder too (Table 7): on stripes it must beat a linear classifier on the
    same encoder's frozen features by far (measured on seeds 0-2: frozen 0.58-0.62, fine-tuned 0.86-0.95)."""
    import copy

    from simclr_lite.evaluate import extract_features, fine_tune
    from simclr_lite.models import Encoder

    g = torch.Generator().manual_seed(0)
    xtr, ytr = _stripes(128, g)
    xte, yte = _stripes(100, g)
    torch.manual_seed(0)
    enc = Encoder("resnet10", 0.125)
    frozen = linear_eval(extract_features(enc, xtr), ytr, extract_features(enc, xte), yte)["top1"]
    tuned = fine_tune(copy.deepcopy(enc), xtr, ytr, xte, yte, epochs=8, batch_size=32)
    assert frozen < 0.7 and tuned["top1"] >= max(0.8, frozen + 0.15), (frozen, tuned)
    assert tuned["top5"] == 1.0                          # 2 classes: top-5 holds both


def knn_top1_of_run(run, k: int | None = None) -> float:
    """kNN top-1 of a run's saved encoder, computed here from its config: every training image in the
    bank, the run's test set, ``k`` (default: the run's knn_k) and knn_t (for test_train's checks)."""
    from simclr_lite.run import load_run
    from simclr_lite.splits import load_splits

    model, cfg = load_run(run)
    train, test = load_splits(cfg)
    ftr, fte = (split.features(model.encoder, cfg, torch.device("cpu")) for split in (train, test))
    ytr, yte = train.y, test.y
    return knn_accuracy(ftr, ytr, fte, yte, k=k or cfg.knn_k, temperature=cfg.knn_t)
