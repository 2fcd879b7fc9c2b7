"""scripts/findings.py: the scorecard page is generated from the chapters' stored findings tables."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("findings", ROOT / "scripts" / "findings.py")
findings = importlib.util.module_from_spec(spec)
spec.loader.exec_module(findings)


def test_the_page_is_what_the_stored_notebooks_say():
    assert findings.OUT.read_text() == findings.render(), "run: python scripts/findings.py"


def test_every_finding_is_tested_by_some_chapter_row():
    rows = findings.chapter_rows()
    for claim, where, prefixes in findings.FINDINGS:
        assert any(r[1].startswith(prefixes) for r in rows), f"{where}: no chapter row starts with {prefixes}"
    assert len(findings.FINDINGS) == 14


def test_only_the_paper_s_direction_counts():
    assert findings.positive("reproduced in trend") and findings.positive("verified (within 2 SE)")
    assert findings.positive("observed at every fraction (each > 2 SE)")
    for v in ("not at this budget (gap +1.0 points, noise 3.1)", "contradicted at this budget", "not separable",
              "partly"):
        assert not findings.positive(v), v


def test_every_row_carries_the_paper_s_number_ours_and_the_full_scale_cell():
    rows = findings.chapter_rows()
    assert len(rows) >= 14
    for r in rows:
        assert r.paper and r.ours and r.gpu and r.verdict, r
    page = findings.render()
    prefixes = tuple(p for _, _, ps in findings.FINDINGS for p in ps)
    for r in (r for r in rows if r.finding.startswith(prefixes)):   # the detail table: paper beside ours
        assert f"| {r.finding} | {r.paper} | {r.ours} | {r.gpu} | {r.verdict} |" in page, r.finding
