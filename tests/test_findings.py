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


def test_every_row_carries_the_paper_s_number_ours_and_the_verdict():
    rows = findings.chapter_rows()
    assert len(rows) >= 14
    for r in rows:
        assert r.paper and r.ours and r.verdict, r
    page = findings.render()
    prefixes = tuple(p for _, _, ps in findings.FINDINGS for p in ps)
    for r in (r for r in rows if r.finding.startswith(prefixes)):   # the detail table: paper beside ours
        assert f"| {r.finding} | {r.paper} | {r.ours} | {r.verdict} |" in page, r.finding


def test_every_full_scale_row_is_on_the_page_with_its_cell_or_command():
    """Issue 30: every findings row shows its full-scale cell or the command that measures it; issue 31:
    the page shows the count at each scale."""
    from simclr_book.fullscale import fullscale_cell
    from simclr_book.specs import FINDINGS
    page = findings.render()
    for f in FINDINGS:
        for row in f.rows:
            assert f"| {f.id} | {row.label} | {row.paper} | {fullscale_cell(f, row)} |" in page, row.label
    assert "At the `cpu` budget:" in page and "At full scale:" in page and "Decided at the largest scale" in page


def test_a_finding_is_decided_at_full_scale_only_with_every_part_measured(monkeypatch, tmp_path):
    """Every part of a finding must have run before its full-scale verdict exists; then the rule decides."""
    import json

    import simclr_book.fullscale as fs
    from simclr_book.specs import PARTS
    monkeypatch.setattr(fs, "GPU_RESULTS", tmp_path)
    assert findings.full_scale(12) == ("not measured yet", [])
    arms = [{"arm": "linear", "seed": 0, "linear": 0.60}, {"arm": "sqrt", "seed": 0, "linear": 0.70}]
    (tmp_path / "ch05-lr.json").write_text(json.dumps({
        "part": "ch05-lr", "budget": "gpu", "device": "GPU", "test_images": 10_000, "arms": arms,
        "floors": {"pixels_linear": 0.4, "random_linear": 0.35, "pixels_knn": 0.35, "random_knn": 0.3}}))
    verdict, records = findings.full_scale(12)
    assert verdict == "reproduced in trend" and records[0].gap > 9.9 and PARTS["ch05-lr"].name == "ch05-lr"
