"""The book's ONE verdict rule: a gap measured over seeds, and the verdict it decides, as records.

The rule, from the issue "Findings decided by one rule":

    A difference is in the paper's direction beyond noise when it exceeds 2 x max(the test-set SE of
    the two accuracies on n test images, the seed SE over at least 3 seeds). Every comparison that
    decides a verdict has at least 3 seeds, unless its gap is at least twice the test-set bar (scarce
    full-scale runs can then decide with one seed). A finding is reproduced in trend only when every
    one of its rows is. Every arm that decides a verdict beats raw pixels and the random encoder (the
    floors).

A gap between two arms (a minus b, in points) is the mean over seeds of the per-seed differences. Its
bar is twice the larger of two standard errors: the seeds' (the spread of the per-seed differences over
sqrt(seeds)) and the test set's (two accuracies on ``n`` test samples, as if independent). A gap beyond
its bar is in the paper's direction or against it; one inside is within noise.

:func:`compare` gives a :class:`Verdict` record (:func:`compare_gains` for a gain against a gain),
:func:`finding_verdict` and :func:`largest_scale` decide a finding from its rows, and :func:`count_line`
sums the findings up. :func:`seed_gap` (with :func:`per_seed_text`) is the gap and bar written out as a
plain dict, the reference the tests hold :func:`compare` to.

Book: every chapter's findings table (chapters 2-5 decide the specs' rows through
:func:`simclr_book.fullscale.decide`) and book/findings.md.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

PAPER = "paper's direction"
AGAINST = "against the paper"
NOISE = "within noise"
SEEDS = "needs 3 seeds"
FLOOR = "below the floor"
STATUSES = (PAPER, AGAINST, NOISE, SEEDS, FLOOR)

REPRODUCED, PARTLY, CONTRADICTED, UNDECIDED = "reproduced in trend", "partly", "contradicted", "not decided"
FINDING_VERDICTS = (REPRODUCED, PARTLY, CONTRADICTED, UNDECIDED)

#: A row's status in a chapter's words: what its findings table prints and book/findings.md counts
#: (a row shows the finding when its verdict starts with "reproduced").
WORDS = {PAPER: "reproduced in trend", AGAINST: "contradicted at this budget", NOISE: "within noise",
         SEEDS: "needs 3 seeds (beyond the bar, under twice the test-set bar)", FLOOR: "below the floor"}

MIN_SEEDS = 3   # seeds a comparison needs to decide, unless its gap is at least 2 x its test-set bar


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


def test_se(p: float, n: int) -> float:
    """Standard error, in points, of an accuracy ``p`` (a fraction) on ``n`` test samples:
    ``100 * sqrt(p (1 - p) / n)``.

    >>> test_se(0.5, 10_000)
    0.5
    """
    return 100 * math.sqrt(p * (1 - p) / n)


test_se.__test__ = False   # type: ignore[attr-defined]  # a formula, not a pytest test


@dataclass(frozen=True)
class Verdict:
    """One row of a findings table: arm ``a`` against arm ``b`` over paired seeds, decided by the rule.

    ``gap`` is raw a - b in points (the claim's ``sign`` is not applied); ``sign`` is +1 when the paper
    says a > b, -1 when a < b and 0 when it says they match ("flat"). ``bar`` is 2 x max(test-set SE of
    the difference, seed SE); ``test_bar`` is its test-set part alone. ``status`` is one of
    :data:`STATUSES`. Made by :func:`compare`.

    Book: every chapter's findings table and book/findings.md.
    """

    label: str
    a_name: str
    b_name: str
    metric: str
    a: float
    b: float
    gap: float
    sign: int
    bar: float
    test_bar: float
    seed_se: float | None
    seeds: int
    per_seed: tuple[float, ...]
    n: int
    status: str
    paper: str
    floor: float | None
    note: str

    @property
    def decides(self) -> bool:
        """True when the row decides: in the paper's direction or against it."""
        return self.status in (PAPER, AGAINST)

    def text(self) -> str:
        """The row as a chapter's table cell: ``+2.4 (bar 1.4, 3 seeds; per seed +1.7 / +2.5 / +0.8):
        paper's direction``; one seed has no per-seed part."""
        seeds = f"{self.seeds} seed" + ("s" if self.seeds != 1 else "")
        per_seed = f"; per seed {' / '.join(f'{d:+.1f}' for d in self.per_seed)}" if self.seeds > 1 else ""
        return f"{self.gap:+.1f} (bar {self.bar:.1f}, {seeds}{per_seed}): {self.status}"

    def cell(self) -> str:
        """The row's verdict as a chapter's findings table prints it (book/findings.md reads the first
        words): ``reproduced in trend (+2.4, bar 1.4, 3 seeds; per seed +1.7 / +2.5 / +0.8)``."""
        seeds = f"{self.seeds} seed" + ("s" if self.seeds != 1 else "")
        per_seed = f"; per seed {' / '.join(f'{d:+.1f}' for d in self.per_seed)}" if self.seeds > 1 else ""
        return f"{WORDS[self.status]} ({self.gap:+.1f}, bar {self.bar:.1f}, {seeds}{per_seed})"

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON-able values (``per_seed`` as a list)."""
        d = dataclasses.asdict(self)
        d["per_seed"] = list(self.per_seed)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        """The record back from :meth:`to_dict` (or its JSON round trip)."""
        if d.get("status") not in STATUSES:
            raise ValueError(f"unknown status {d.get('status')!r}; expected one of {STATUSES}")
        return cls(**{**d, "per_seed": tuple(d["per_seed"])})


def _status(gap: float, sign: int, bar: float, test_bar: float, seeds: int) -> tuple[str, str]:
    """The rule for a gap beyond the floors: (status, note)."""
    beyond, big = abs(gap) > bar, abs(gap) >= 2 * test_bar
    if sign == 0:
        if not beyond:
            return PAPER, "within noise, as the paper says"
        if seeds >= MIN_SEEDS or big:
            return AGAINST, "beyond the bar; the paper says flat"
        return SEEDS, f"beyond the bar with {seeds} seed(s), under 2x the test-set bar"
    if not beyond:
        return NOISE, "inside the bar"
    if seeds < MIN_SEEDS and not big:
        return SEEDS, f"beyond the bar with {seeds} seed(s), under 2x the test-set bar"
    why = "beyond the bar" if seeds >= MIN_SEEDS else f"{seeds} seed(s), at least 2x the test-set bar"
    return (PAPER, why) if sign * gap > 0 else (AGAINST, why + ", the other way")


def compare(label: str, a: Sequence[float], b: Sequence[float], n: int, sign: int = +1, *,
            a_name: str = "a", b_name: str = "b", metric: str = "", paper: str = "",
            floor: Union[float, Sequence[float], None] = None) -> Verdict:
    """Decide arm ``a`` against arm ``b`` by the book's rule: per-seed accuracies (fractions, paired by
    seed) on ``n`` test samples, the paper's ``sign`` (+1: a > b, -1: a < b, 0: flat) and the floors
    (raw pixels, the random encoder: a float or several, the highest counts).

    The rule: an arm at or below the floor cannot decide (FLOOR). Otherwise a gap inside
    bar = 2 x max(test-set SE of the difference, seed SE) is within noise (for sign 0: the paper's
    direction); a gap beyond it decides with at least 3 seeds, or with fewer when it is at least twice
    the test-set bar, and needs 3 seeds otherwise.

    Book: every chapter's findings table and book/findings.md.

    >>> v = compare("Table 5: t = 0.5 vs 1", [0.52, 0.53, 0.51], [0.50, 0.50, 0.50], n=10_000)
    >>> round(v.gap, 2), round(v.seed_se, 2), round(v.test_bar, 2)  # 1/sqrt(3); 2 sqrt(.2496 + .25)
    (2.0, 0.58, 1.41)
    >>> v.text()
    "+2.0 (bar 1.4, 3 seeds; per seed +2.0 / +3.0 / +1.0): paper's direction"
    >>> compare("one seed", [0.52], [0.50], n=10_000).status   # beyond 1.41, under 2 x 1.41
    'needs 3 seeds'
    """
    if len(a) != len(b):
        raise ValueError(f"{label}: a has {len(a)} seeds and b {len(b)}; they are paired by seed")
    if not a:
        raise ValueError(f"{label}: no seeds")
    if not all(0 <= x <= 1 for x in (*a, *b)):
        raise ValueError(f"{label}: accuracies are fractions in [0, 1], got a={list(a)} b={list(b)}")
    if n < 1:
        raise ValueError(f"{label}: n must be at least 1 test sample, got {n}")
    if sign not in (-1, 0, 1):
        raise ValueError(f"{label}: sign must be -1, 0 or +1, got {sign!r}")
    floors = [] if floor is None else [float(f) for f in floor] if hasattr(floor, "__iter__") else [float(floor)]
    top = max(floors) if floors else None

    per_seed = tuple(100 * (x - y) for x, y in zip(a, b))
    ma, mb, gap, seeds = statistics.mean(a), statistics.mean(b), statistics.mean(per_seed), len(per_seed)
    test_bar = 2 * math.hypot(test_se(ma, n), test_se(mb, n))
    seed_se = statistics.stdev(per_seed) / math.sqrt(seeds) if seeds >= 2 else None
    bar = max(test_bar, 2 * seed_se) if seed_se is not None else test_bar
    if top is not None and min(ma, mb) <= top:
        status, note = FLOOR, f"an arm at or below the floor ({100 * top:.1f}%)"
    else:
        status, note = _status(gap, sign, bar, test_bar, seeds)
    return Verdict(label=label, a_name=a_name, b_name=b_name, metric=metric, a=ma, b=mb, gap=gap,
                   sign=sign, bar=bar, test_bar=test_bar, seed_se=seed_se, seeds=seeds,
                   per_seed=per_seed, n=n, status=status, paper=paper, floor=top, note=note)


def compare_gains(label: str, a_hi: Sequence[float], a_lo: Sequence[float], b_hi: Sequence[float],
                  b_lo: Sequence[float], n: int, sign: int = +1, *, a_name: str = "a", b_name: str = "b",
                  metric: str = "", paper: str = "", floor: Union[float, Sequence[float], None] = None,
                  floor_b: bool = True) -> Verdict:
    """The same rule for a gain against a gain: ``(a_hi - a_lo) - (b_hi - b_lo)`` per seed, e.g. what
    colour strength (Table 1) or width (Fig. 7) adds to SimCLR against what it adds to supervised
    training. The record's ``a`` and ``b`` are the two mean gains (fractions, may be negative); the
    test-set bar adds the four accuracies' variances; the floor applies to all four arms, or to
    ``a_hi`` and ``a_lo`` alone with ``floor_b=False`` (when b is supervised training, which the
    representation floors do not measure).

    >>> v = compare_gains("Fig. 7", [0.60], [0.50], [0.70], [0.68], n=10_000)   # +10 vs +2 points
    >>> round(v.gap, 1), round(v.test_bar, 2), v.status
    (8.0, 1.92, "paper's direction")
    """
    arms = (a_hi, a_lo, b_hi, b_lo)
    if len({len(x) for x in arms}) != 1 or not a_hi:
        raise ValueError(f"{label}: the four arms need the same number of seeds (>= 1), got "
                         f"{[len(x) for x in arms]}")
    if not all(0 <= x <= 1 for arm in arms for x in arm):
        raise ValueError(f"{label}: accuracies are fractions in [0, 1]")
    if n < 1 or sign not in (-1, 0, 1):
        raise ValueError(f"{label}: n must be >= 1 and sign -1, 0 or +1, got n={n}, sign={sign!r}")
    ga = [x - y for x, y in zip(a_hi, a_lo)]
    gb = [x - y for x, y in zip(b_hi, b_lo)]
    per_seed = tuple(100 * (x - y) for x, y in zip(ga, gb))
    gap, seeds = statistics.mean(per_seed), len(per_seed)
    test_bar = 2 * math.sqrt(sum(test_se(statistics.mean(arm), n) ** 2 for arm in arms))
    seed_se = statistics.stdev(per_seed) / math.sqrt(seeds) if seeds >= 2 else None
    bar = max(test_bar, 2 * seed_se) if seed_se is not None else test_bar
    floors = [] if floor is None else [float(f) for f in floor] if hasattr(floor, "__iter__") else [float(floor)]
    top = max(floors) if floors else None
    if top is not None and min(statistics.mean(arm) for arm in (arms if floor_b else arms[:2])) <= top:
        status, note = FLOOR, f"an arm at or below the floor ({100 * top:.1f}%)"
    else:
        status, note = _status(gap, sign, bar, test_bar, seeds)
    return Verdict(label=label, a_name=a_name, b_name=b_name, metric=metric, a=statistics.mean(ga),
                   b=statistics.mean(gb), gap=gap, sign=sign, bar=bar, test_bar=test_bar, seed_se=seed_se,
                   seeds=seeds, per_seed=per_seed, n=n, status=status, paper=paper, floor=top, note=note)


def finding_verdict(rows: Sequence[Verdict]) -> str:
    """A finding from its rows: "reproduced in trend" only when every row is in the paper's direction,
    "partly" when some are, "contradicted" when none is and one is against the paper, else
    "not decided".

    Book: every chapter's findings table and book/findings.md.
    """
    if not rows:
        raise ValueError("a finding needs at least one row")
    statuses = [r.status for r in rows]
    if all(s == PAPER for s in statuses):
        return REPRODUCED
    if PAPER in statuses:
        return PARTLY
    return CONTRADICTED if AGAINST in statuses else UNDECIDED


def largest_scale(by_scale: Mapping[str, Sequence[Verdict]],
                  order: Sequence[str] = ("gpu", "cpu")) -> tuple[str, list[Verdict]]:
    """Each finding is decided at the largest scale measured: the full-scale column where it has the
    seeds, else cpu.

    The first scale of ``order`` with rows in ``by_scale`` and no row that needs 3 seeds; else the last
    such scale with rows. Book: every chapter's findings table and book/findings.md.
    """
    present = [s for s in order if by_scale.get(s)]
    if not present:
        raise ValueError(f"no rows at any scale of {tuple(order)}; got {sorted(by_scale)}")
    for s in present:
        if all(r.status != SEEDS for r in by_scale[s]):
            return s, list(by_scale[s])
    return present[-1], list(by_scale[present[-1]])


def count_line(verdicts: Mapping[str, str]) -> str:
    """The scorecard's line from finding id -> :func:`finding_verdict`: "6 of 14 reproduced in trend,
    5 partly, 2 contradicted, 1 not decided" (categories at zero left out, but the first).

    Book: book/findings.md.

    >>> count_line({"F1": "reproduced in trend", "F2": "partly", "F3": "partly"})
    '1 of 3 reproduced in trend, 2 partly'
    """
    unknown = sorted(set(verdicts.values()) - set(FINDING_VERDICTS))
    if unknown:
        raise ValueError(f"unknown finding verdicts {unknown}; expected one of {FINDING_VERDICTS}")
    counts = [sum(v == k for v in verdicts.values()) for k in FINDING_VERDICTS]
    rest = [f"{c} {k}" for c, k in zip(counts[1:], FINDING_VERDICTS[1:]) if c]
    return ", ".join([f"{counts[0]} of {len(verdicts)} {REPRODUCED}", *rest])
