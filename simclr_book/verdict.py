"""The book's noise rule for a gap measured over seeds: one definition that every chapter imports.

A gap between two arms (a minus b, in points) is the mean over seeds of the per-seed differences. Its
bar is twice the larger of two standard errors: the seeds' (the spread of the per-seed differences over
sqrt(seeds)) and the test set's (two accuracies on ``n`` test samples, as if independent). A gap beyond
its bar is in the paper's direction or against it; one inside is within noise. (The issue "Findings
decided by one rule" extends this rule to every verdict of the book.)

Book: chapter 3 (Tables 4 and 5 over seeds) and chapter 4 (Fig. 8 over seeds).
"""
from __future__ import annotations

import statistics
from typing import Any, Sequence


def seed_gap(pairs: Sequence[tuple[float, float]], n: int) -> dict[str, Any]:
    """Mean over seeds of a - b (points) for per-seed accuracies ``(a, b)`` (fractions, on ``n`` test
    samples each), with ``a`` and ``b`` (their means), the per-seed gaps and the bar.

    >>> g = seed_gap([(0.52, 0.50), (0.53, 0.50), (0.51, 0.50)], n=10_000)
    >>> round(g["gap"], 2), [round(d, 2) for d in g["per_seed"]]
    (2.0, [2.0, 3.0, 1.0])
    >>> round(g["bar"], 2)     # 2 x max(seeds: 1.0 / sqrt(3) = 0.58, test set: 0.71)
    1.41
    """
    if len(pairs) < 2:
        raise ValueError(f"seed_gap needs at least 2 seeds (3 to decide a verdict), got {len(pairs)}")
    diffs = [100 * (a - b) for a, b in pairs]
    ma, mb = statistics.mean(a for a, _ in pairs), statistics.mean(b for _, b in pairs)
    se_seeds = statistics.stdev(diffs) / len(diffs) ** 0.5
    se_test = 100 * (ma * (1 - ma) / n + mb * (1 - mb) / n) ** 0.5
    return dict(a=ma, b=mb, gap=statistics.mean(diffs), bar=2 * max(se_seeds, se_test), per_seed=diffs)


def per_seed_text(gap: dict[str, Any]) -> str:
    """The per-seed gaps of :func:`seed_gap` as the chapters print them: ``+1.7 / +2.5 / +0.8``."""
    return " / ".join(f"{d:+.1f}" for d in gap["per_seed"])
