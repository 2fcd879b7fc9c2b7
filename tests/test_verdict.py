"""simclr_book.verdict: the book's one verdict rule (a gap over seeds, a row, a finding), written once."""
from __future__ import annotations

import json
import math
import statistics

import pytest

from simclr_book.verdict import (AGAINST, FLOOR, NOISE, PAPER, SEEDS, STATUSES, Verdict, compare, count_line,
                                 finding_verdict, largest_scale, per_seed_text, seed_gap, test_se)


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


# --- the rule as records: compare, Verdict, finding_verdict, largest_scale, count_line ---------------

N = 10_000


def _test_bar(a: float, b: float, n: int = N) -> float:
    """2 x the test-set SE of a difference, written out from the formula."""
    return 2 * 100 * math.sqrt(a * (1 - a) / n + b * (1 - b) / n)


def test_test_se_closed_form():
    assert test_se(0.5, 10_000) == pytest.approx(0.5)
    assert test_se(0.9, 100) == pytest.approx(100 * math.sqrt(0.09 / 100)) == pytest.approx(3.0)
    assert test_se(1.0, 50) == 0.0


def test_bar_one_seed_is_the_test_set_bar():
    """60% vs 50% on 10,000: SE of the difference sqrt(.24 + .25) / 100 x 100 = 0.7, bar 1.4; no seed SE."""
    v = compare("one seed", [0.60], [0.50], N)
    assert v.seed_se is None and v.seeds == 1 and v.per_seed == pytest.approx((10.0,))
    assert v.test_bar == pytest.approx(1.4) and v.bar == pytest.approx(1.4)
    assert v.gap == pytest.approx(10.0) and v.a == pytest.approx(0.60) and v.b == pytest.approx(0.50)


@pytest.mark.parametrize("a, n, bar_from", [
    ([0.52, 0.53, 0.51], 10_000, "test set"),    # seed SE 1/sqrt(3) = 0.58 < 0.71
    ([0.60, 0.50, 0.55], 100_000, "seeds"),      # seed SE 5/sqrt(3) = 2.89 > 0.22
])
def test_bar_three_seeds_closed_form(a, n, bar_from):
    b = [0.50] * 3
    diffs = [100 * (x - 0.5) for x in a]
    seed_se = statistics.stdev(diffs) / math.sqrt(3)
    tb = _test_bar(statistics.mean(a), 0.5, n)
    v = compare("three seeds", a, b, n)
    assert v.seed_se == pytest.approx(seed_se) and v.test_bar == pytest.approx(tb)
    assert v.bar == pytest.approx(tb if bar_from == "test set" else 2 * seed_se)
    assert v.bar == pytest.approx(2 * max(seed_se, tb / 2))
    # the same numbers as the dict form the chapters print
    g = seed_gap(list(zip(a, b)), n)
    assert v.bar == pytest.approx(g["bar"]) and v.gap == pytest.approx(g["gap"])


def test_two_seeds_have_a_seed_se():
    """+10 and 0 points on 100,000: stdev sqrt(50), seed SE 5, bar 10 (test-set bar 0.44); a gap of 5 is
    within it."""
    v = compare("two seeds", [0.60, 0.50], [0.50, 0.50], 100_000)
    assert v.seed_se == pytest.approx(math.sqrt(50) / math.sqrt(2)) == pytest.approx(5.0)
    assert v.bar == pytest.approx(10.0) and v.test_bar == pytest.approx(_test_bar(0.55, 0.5, 100_000))
    assert v.status == NOISE


@pytest.mark.parametrize("a, b, sign, floor, status", [
    # 10 points at one seed: beyond 2 x 1.4 = 2.8, decides with one seed
    ([0.60], [0.50], +1, None, PAPER),
    ([0.60], [0.50], -1, None, AGAINST),
    # an arm at or below the highest floor cannot decide, whatever the gap
    ([0.60], [0.50], +1, 0.55, FLOOR),
    ([0.60], [0.50], +1, [0.30, 0.50], FLOOR),   # b == the highest floor
    ([0.60], [0.50], +1, [0.30, 0.45], PAPER),   # both arms beat the floors
    # 1 point, bar 1.41: within noise
    ([0.51], [0.50], +1, None, NOISE),
    ([0.51, 0.51, 0.51], [0.50] * 3, -1, None, NOISE),
    # 2 points, bar 1.41: beyond it, under 2 x 1.41 = 2.83: one or two seeds are not enough ...
    ([0.52], [0.50], +1, None, SEEDS),
    ([0.52, 0.52], [0.50, 0.50], -1, None, SEEDS),
    # ... three are
    ([0.52, 0.53, 0.51], [0.50] * 3, +1, None, PAPER),
    ([0.52, 0.53, 0.51], [0.50] * 3, -1, None, AGAINST),
    # sign 0, the paper says flat: inside the bar is the paper's direction
    ([0.51], [0.50], 0, None, PAPER),
    ([0.51, 0.50, 0.51], [0.50] * 3, 0, None, PAPER),
    ([0.52, 0.53, 0.51], [0.50] * 3, 0, None, AGAINST),   # beyond, 3 seeds
    ([0.60], [0.50], 0, None, AGAINST),                   # beyond 2 x test bar, one seed
    ([0.52], [0.50], 0, None, SEEDS),                     # beyond, under 2 x test bar, one seed
    ([0.51], [0.50], 0, 0.5, FLOOR),
])
def test_each_status(a, b, sign, floor, status):
    v = compare("row", a, b, N, sign, floor=floor)
    assert v.status == status, v
    assert v.status in STATUSES and v.decides == (status in (PAPER, AGAINST))
    assert v.note


def test_sign_zero_inside_the_bar_says_so():
    assert compare("flat", [0.51], [0.50], N, 0).note == "within noise, as the paper says"


@pytest.mark.parametrize("a, b, sign", [
    ([0.60], [0.50], +1), ([0.52], [0.50], +1), ([0.51], [0.50], -1),
    ([0.52, 0.53, 0.51], [0.50] * 3, +1), ([0.52, 0.53, 0.51], [0.50] * 3, -1),
    ([0.41, 0.47, 0.44], [0.45, 0.44, 0.46], +1), ([0.52, 0.53, 0.51], [0.50] * 3, 0), ([0.52], [0.50], 0),
])
def test_swapping_the_arms_with_the_sign_flipped_keeps_the_status(a, b, sign):
    ab, ba = compare("ab", a, b, N, sign), compare("ba", b, a, N, -sign)
    assert ab.status == ba.status
    assert ab.gap == pytest.approx(-ba.gap) and ab.bar == pytest.approx(ba.bar)
    assert ab.test_bar == pytest.approx(ba.test_bar)


@pytest.mark.parametrize("gap_points, status", [(3.0, PAPER), (2.0, SEEDS), (1.0, NOISE)])
def test_the_one_seed_exception(gap_points, status):
    """One seed decides only when its gap is at least twice the test-set bar."""
    a, b = 0.50 + gap_points / 100, 0.50
    tb = _test_bar(a, b)
    assert (gap_points >= 2 * tb) == (status == PAPER)
    assert (gap_points > tb) == (status != NOISE)
    assert compare("one seed", [a], [b], N).status == status


def test_text():
    v = compare("Table 5", [0.52, 0.53, 0.51], [0.50] * 3, N)
    assert v.text() == "+2.0 (bar 1.4, 3 seeds; per seed +2.0 / +3.0 / +1.0): paper's direction"
    w = compare("Table 1", [0.621], [0.50], N)
    assert w.text() == f"+12.1 (bar {_test_bar(0.621, 0.5):.1f}, 1 seed): paper's direction"
    assert compare("noise", [0.49], [0.50], N).text() == "-1.0 (bar 1.4, 1 seed): within noise"


@pytest.mark.parametrize("v", [
    compare("Table 1: s = 1/8 -> 1/2", [0.52, 0.53, 0.51], [0.50] * 3, N, a_name="s = 1/2",
            b_name="s = 1/8", metric="linear", paper="+5.1", floor=[0.3, 0.4]),
    compare("one seed", [0.60], [0.50], N, -1, metric="kNN"),
])
def test_json_round_trip(v):
    back = Verdict.from_dict(json.loads(json.dumps(v.to_dict())))
    assert back == v and isinstance(back.per_seed, tuple)


def test_from_dict_rejects_an_unknown_status():
    d = compare("row", [0.6], [0.5], N).to_dict()
    with pytest.raises(ValueError, match="unknown status"):
        Verdict.from_dict({**d, "status": "reproduced"})


def _rows(*statuses):
    """Verdicts with the given statuses (and nothing else that matters)."""
    v = compare("row", [0.6], [0.5], N)
    return [Verdict.from_dict({**v.to_dict(), "status": s}) for s in statuses]


@pytest.mark.parametrize("statuses, outcome", [
    ((PAPER,), "reproduced in trend"), ((PAPER, PAPER, PAPER), "reproduced in trend"),
    ((PAPER, NOISE), "partly"), ((AGAINST, PAPER), "partly"), ((PAPER, SEEDS, FLOOR), "partly"),
    ((AGAINST,), "contradicted"), ((NOISE, AGAINST, SEEDS), "contradicted"),
    ((NOISE,), "not decided"), ((NOISE, SEEDS, FLOOR), "not decided"),
])
def test_finding_verdict(statuses, outcome):
    assert finding_verdict(_rows(*statuses)) == outcome


def test_finding_verdict_needs_rows():
    with pytest.raises(ValueError, match="at least one row"):
        finding_verdict([])


@pytest.mark.parametrize("gpu, cpu, scale", [
    ((PAPER, NOISE), (SEEDS,), "gpu"),       # the full scale has the seeds (or decides)
    ((PAPER, SEEDS), (PAPER, PAPER), "cpu"),  # a full-scale row needs 3 seeds
    ((SEEDS,), (SEEDS,), "cpu"),              # neither: the last scale measured
    (None, (NOISE,), "cpu"),                  # no full-scale run
    ((AGAINST,), None, "gpu"),
])
def test_largest_scale(gpu, cpu, scale):
    by_scale = {k: _rows(*v) for k, v in (("gpu", gpu), ("cpu", cpu)) if v is not None}
    got, rows = largest_scale(by_scale)
    assert got == scale and rows == by_scale[scale]


def test_largest_scale_follows_the_order_and_needs_rows():
    by_scale = {"gpu": _rows(PAPER), "cpu": _rows(NOISE)}
    assert largest_scale(by_scale, order=("cpu", "gpu"))[0] == "cpu"
    with pytest.raises(ValueError, match="no rows"):
        largest_scale({"tpu": _rows(PAPER)})


def test_count_line():
    verdicts = {f"F{i}": v for i, v in enumerate(
        ["reproduced in trend"] * 6 + ["partly"] * 5 + ["contradicted"] * 2 + ["not decided"])}
    assert count_line(verdicts) == "6 of 14 reproduced in trend, 5 partly, 2 contradicted, 1 not decided"
    assert count_line({"F1": "not decided", "F2": "contradicted"}) == \
        "0 of 2 reproduced in trend, 1 contradicted, 1 not decided"
    with pytest.raises(ValueError, match="unknown finding verdicts"):
        count_line({"F1": "reproduced"})


@pytest.mark.parametrize("a, b, n, sign, match", [
    ([0.5, 0.6], [0.5], N, 1, "paired by seed"),
    ([], [], N, 1, "no seeds"),
    ([0.5], [1.2], N, 1, r"in \[0, 1\]"),
    ([-0.1], [0.5], N, 1, r"in \[0, 1\]"),
    ([52.0], [50.0], N, 1, r"in \[0, 1\]"),      # points instead of fractions
    ([float("nan")], [0.5], N, 1, r"in \[0, 1\]"),
    ([0.5], [0.4], 0, 1, "n must be at least 1"),
    ([0.5], [0.4], N, 2, "sign must be"),
])
def test_input_validation(a, b, n, sign, match):
    with pytest.raises(ValueError, match=match):
        compare("bad", a, b, n, sign)


def test_compare_gains_closed_form_and_symmetry():
    """A gain against a gain: per-seed (a_hi - a_lo) - (b_hi - b_lo); the test bar adds four variances."""
    from simclr_book.verdict import AGAINST, PAPER, SEEDS, compare_gains, test_se
    a_hi, a_lo, b_hi, b_lo = [0.60, 0.61, 0.59], [0.50, 0.50, 0.50], [0.70, 0.70, 0.70], [0.68, 0.69, 0.67]
    v = compare_gains("g", a_hi, a_lo, b_hi, b_lo, n=10_000)
    assert v.per_seed == pytest.approx((8.0, 10.0, 6.0)) and v.gap == pytest.approx(8.0)
    bar = 2 * math.sqrt(test_se(0.60, 10_000) ** 2 + test_se(0.5, 10_000) ** 2 + test_se(0.7, 10_000) ** 2
                        + test_se(0.68, 10_000) ** 2)
    assert v.test_bar == pytest.approx(bar) and v.status == PAPER
    assert compare_gains("g", b_hi, b_lo, a_hi, a_lo, n=10_000).status == AGAINST    # swapped: the other way
    assert compare_gains("g", b_hi, b_lo, a_hi, a_lo, n=10_000, sign=-1).status == PAPER
    assert compare_gains("g", [0.53], [0.50], [0.50], [0.50], n=10_000).status == SEEDS   # 3 > 1.9, < 3.8
    with pytest.raises(ValueError, match="same number of seeds"):
        compare_gains("g", [0.5], [0.5, 0.4], [0.5], [0.5], n=10)


@pytest.mark.parametrize("a,b,seeds,start", [
    ([0.60, 0.61, 0.59], [0.50, 0.50, 0.51], 3, "reproduced in trend (+9.7, bar"),
    ([0.50, 0.50, 0.51], [0.60, 0.61, 0.59], 3, "contradicted at this budget (-9.7, bar"),
    ([0.50], [0.505], 1, "within noise (-0.5, bar"),
    ([0.52], [0.50], 1, "needs 3 seeds"),
])
def test_cell_words_are_what_findings_md_counts(a, b, seeds, start):
    from simclr_book.verdict import compare
    v = compare("r", a, b, n=10_000)
    assert v.cell().startswith(start) and (f"{seeds} seeds" if seeds > 1 else "1 seed)") in v.cell()
