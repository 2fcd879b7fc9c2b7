"""kNN monitor: ``knn_predict`` must give the stored (golden) scores of the plain implementation.

``tests/golden/knn_scores.npz`` holds int8 features and the scores of the original ``knn_predict``
(normalise, one matmul per chunk, full ``topk``, weighted votes; ``knn_predict_reference`` of
``tests/test_evaluate.py`` at commit c0d87ce), made by ``tests/golden/make_golden.py``: several chunk sizes
and k, duplicate features with exact ties at the k-th place, NaN and inf. Only queries whose k nearest
neighbours cannot change with float rounding are stored, so the scores agree to ``SCORE_RTOL`` on any CPU
(AVX2 or AVX-512 kernels, any BLAS). Any speed-up of ``knn_predict`` (see ``benchmarks/bench_knn.py``) has
to keep these tests passing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from simclr_lite.errors import ConfigError
from simclr_lite.evaluate import knn_accuracy, knn_predict, linear_eval

GOLDEN = Path(__file__).resolve().parent / "golden" / "knn_scores.npz"
#: Scores are sums of exp(similarity / 0.1) in float32: a rounding change of a similarity (~1e-7) moves
#: them by ~1e-6 relative. Measured against the stored scores with torch's AVX-512, AVX2 and plain kernels
#: and MKL limited to AVX2 / SSE4.2: identical. One neighbour more or less, or temperature 0.1 -> 0.1001,
#: moves them by > 1e-3.
SCORE_RTOL = 1e-5
CLUSTERED = ["clustered_k200_chunk128", "clustered_k20_chunk2048", "clustered_k1_chunk16", "clustered_k200_bank50"]


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN, allow_pickle=False) as z:
        return {k: torch.from_numpy(z[k]) for k in z.files}


def assert_same_scores(new: torch.Tensor, stored: torch.Tensor) -> None:
    """Same shape, NaN where the stored scores are NaN, zero where they are zero (no vote for that class),
    and the other scores within ``SCORE_RTOL``."""
    assert new.shape == stored.shape, (new.shape, stored.shape)
    assert torch.equal(new.isnan(), stored.isnan()), "NaN scores differ from the golden scores"
    new, stored = new.nan_to_num(), stored.nan_to_num()
    assert torch.equal(new == 0, stored == 0), "other classes got votes than in the golden scores"
    err = ((new - stored).abs() / stored.abs().clamp_min(1e-30)).max().item()
    assert err <= SCORE_RTOL, f"scores differ from the golden scores by up to {err:.3g} relative"


def clustered(golden, rows: int = 0):
    xtr, ytr = golden["clustered_train"].float(), golden["clustered_train_labels"]
    if rows:
        xtr, ytr = xtr[:rows], ytr[:rows]
    return xtr, ytr, golden["clustered_test"].float(), golden["clustered_test_labels"]


@pytest.mark.parametrize("name", CLUSTERED)
def test_knn_predict_same_as_golden_scores(golden, name):
    """The monitor's k over several chunks and a partial one; one chunk; k = 1; k > N (clipped to N)."""
    k, chunk, rows = golden[f"{name}_params"].tolist()
    xtr, ytr, xte, _ = clustered(golden, rows)
    scores = knn_predict(xtr, ytr, xte, k=k, temperature=0.1, num_classes=10, chunk_size=chunk)
    assert scores.shape == (len(xte), 10)
    assert_same_scores(scores[golden[f"{name}_queries"]], golden[f"{name}_scores"])


@pytest.mark.parametrize("k", [1, 7, 50, 200])
def test_knn_predict_same_as_golden_with_ties_and_duplicates(golden, k):
    """Duplicate training features (exact ties, also at the k-th place) and low-precision values."""
    xtr, ytr, xte = golden["ties_train"].float(), golden["ties_train_labels"], golden["ties_test"].float()
    scores = knn_predict(xtr, ytr, xte, k=k, num_classes=5)
    assert_same_scores(scores[golden[f"ties_k{k}_queries"]], golden[f"ties_k{k}_scores"])


def test_knn_non_finite_features_give_nan_votes(golden):
    """A NaN in a training feature: its similarity is NaN, topk ranks it first, its class's score is NaN
    for every query; an inf in a query: every similarity is NaN, so are its scores."""
    xtr, ytr, xte, _ = clustered(golden)
    xtr, xte = xtr[:, :16].clone(), xte[:64, :16].clone()
    xtr[7, 3], xte[5, 0] = float("nan"), float("inf")
    scores = knn_predict(xtr, ytr, xte, k=50, num_classes=10)
    assert_same_scores(scores[golden["nonfinite_queries"]], golden["nonfinite_scores"])
    others = torch.arange(64) != 5
    assert scores[others, ytr[7]].isnan().all() and scores[others].isnan().sum() == others.sum()
    assert scores[5].isnan().any() and (scores[5].isnan() | (scores[5] == 0)).all()


def test_knn_predict_does_not_depend_on_the_chunk_size(golden):
    xtr, ytr, xte, _ = clustered(golden)
    q = golden["clustered_k200_chunk128_queries"]
    one = knn_predict(xtr, ytr, xte, k=200, chunk_size=4096)[q]
    for chunk in (1, 7, 128):
        assert_same_scores(knn_predict(xtr, ytr, xte, k=200, chunk_size=chunk)[q], one)


def test_golden_comparison_catches_small_real_changes(golden):
    """The tolerance is not vacuous: one score 1e-4 off, one neighbour fewer, a temperature 0.1% off fail."""
    name = "clustered_k200_chunk128"
    xtr, ytr, xte, _ = clustered(golden)
    q, stored = golden[f"{name}_queries"], golden[f"{name}_scores"]
    assert_same_scores(knn_predict(xtr, ytr, xte, k=200, chunk_size=128)[q], stored)   # the real thing passes
    nudged = stored.clone()
    nudged[17, int(nudged[17].argmax())] *= 1 + 1e-4
    for changed in (nudged, knn_predict(xtr, ytr, xte, k=199, chunk_size=128)[q],
                    knn_predict(xtr, ytr, xte, k=200, temperature=0.1001, chunk_size=128)[q]):
        with pytest.raises(AssertionError, match="golden scores"):
            assert_same_scores(changed, stored)


def test_knn_accuracy_and_errors(golden):
    name = "clustered_k20_chunk2048"
    xtr, ytr, xte, yte = clustered(golden)
    assert len(golden[f"{name}_queries"]) == len(xte)   # every query stored: the accuracy is the golden one
    expected = (golden[f"{name}_scores"].argmax(1) == yte).float().mean().item()
    acc = knn_accuracy(xtr, ytr, xte, yte, k=20)
    assert acc == expected and acc > 0.5
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
