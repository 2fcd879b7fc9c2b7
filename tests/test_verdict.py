"""simclr_book.verdict: the noise rule for a gap over seeds, written once for every chapter."""
from __future__ import annotations

import math

import pytest

from simclr_book.verdict import per_seed_text, seed_gap


def test_closed_form():
    """Three seeds of +2, +3, +1 points at 52/53/51% vs 50% on 10,000 samples: gap 2, seed SE 1/sqrt(3),
    test-set SE sqrt(.52 x .48 / n + .5 x .5 / n) x 100; the bar is twice the larger."""
    g = seed_gap([(0.52, 0.50), (0.53, 0.50), (0.51, 0.50)], n=10_000)
    assert g["gap"] == pytest.approx(2.0) and g["a"] == pytest.approx(0.52) and g["b"] == pytest.approx(0.50)
    se_test = 100 * math.sqrt(0.52 * 0.48 / 10_000 + 0.25 / 10_000)
    assert g["bar"] == pytest.approx(2 * max(1 / math.sqrt(3), se_test)) == pytest.approx(2 * se_test)
    assert per_seed_text(g) == "+2.0 / +3.0 / +1.0"


def test_the_seed_spread_sets_the_bar_when_it_is_the_larger():
    g = seed_gap([(0.60, 0.50), (0.50, 0.50), (0.55, 0.50)], n=100_000)   # +10, 0, +5 points
    assert g["bar"] == pytest.approx(2 * 5 / math.sqrt(3))                 # stdev 5, three seeds
    assert g["gap"] == pytest.approx(5.0)


def test_against_the_order_of_a_and_b():
    """Swapping the arms flips the gap and keeps the bar."""
    pairs = [(0.48, 0.47), (0.49, 0.46), (0.47, 0.47)]
    ab, ba = seed_gap(pairs, 1000), seed_gap([(b, a) for a, b in pairs], 1000)
    assert ab["gap"] == pytest.approx(-ba["gap"]) and ab["bar"] == pytest.approx(ba["bar"])


def test_one_seed_has_no_spread():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        seed_gap([(0.5, 0.4)], 1000)
