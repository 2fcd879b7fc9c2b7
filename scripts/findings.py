"""The book's scorecard: the paper's 14 findings that the chapters set out to show, and their verdicts.

Reads the findings tables that the chapters' stored outputs print (book/0*.ipynb, executed at the `cpu`
budget) and writes book/findings.md: one line per finding of the paper with the verdict of every row
of the chapters' tables that tests it, and a count. Nothing here is typed by hand except which table
rows belong to which finding (FINDINGS below); the verdicts are the chapters' own, decided by the rules
in their code.

    python scripts/findings.py            # rewrite book/findings.md
    python scripts/findings.py --check    # exit 1 when book/findings.md is not what the notebooks say
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple

ROOT_ = Path(__file__).resolve().parents[1]
if str(ROOT_) not in sys.path:       # run as a script from a checkout: this checkout's simclr_book
    sys.path.insert(0, str(ROOT_))

from simclr_book.fullscale import decide, fullscale_cell, read_results  # noqa: E402
from simclr_book.specs import FINDINGS as SPEC_FINDINGS  # noqa: E402
from simclr_book.verdict import SEEDS, finding_verdict  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
OUT = BOOK / "findings.md"

# The findings (claim, where, chapter, parts, full-scale rows) are simclr_book.specs.FINDINGS; here only which
# rows of the chapters' stored findings tables (the `cpu` budget) test each one, by their first words.
PREFIXES: dict[int, tuple[str, ...]] = {
    1: ("Fig. 5:",), 2: ("Fig. 6:",), 3: ("Table 1:",), 4: ("Fig. 7:",), 5: ("Fig. 8:",), 6: ("Table 3:",),
    7: ("B.4: t-SNE",), 8: ("B.4: a linear head",), 9: ("Table 4:",), 10: ("Table 5:",),
    11: ("Fig. 9:", "Fig. 9 (", "Fig. 9's mechanism"),   # equal epochs, and the control that isolates negatives
    12: ("B.1: square-root",),
    13: ("Sec. 2.2: per-device BN", "Sec. 2.2: global BN", "Sec. 2.2, the real mechanism"),
    14: ("Table 7:",),
}
FINDINGS: list[tuple[str, str, tuple[str, ...]]] = [(f.claim, f.where, PREFIXES[f.id]) for f in SPEC_FINDINGS]
CHAPTER_TITLES = {}


def positive(verdict: str) -> bool:
    """A row's verdict that shows the paper's finding (the chapters' rules print these words)."""
    return verdict.lower().startswith(("reproduced", "verified", "observed"))


class Row(NamedTuple):
    """One row of a chapter's findings table (its stored output)."""
    notebook: str
    finding: str
    paper: str
    ours: str
    gpu: str
    verdict: str


def chapter_rows() -> list[Row]:
    """Every row of every findings table in the chapters' stored outputs, read by the table's header."""
    rows = []
    for nb_path in sorted(BOOK.glob("0*.ipynb")):
        nb = json.loads(nb_path.read_text())
        CHAPTER_TITLES[nb_path.stem] = "".join(nb["cells"][0]["source"]).splitlines()[0].lstrip("# ").strip()
        for cell in nb["cells"]:
            for out in cell.get("outputs", []):
                text = "".join(out.get("data", {}).get("text/markdown", ""))
                if not text.startswith("| finding |"):
                    continue
                header = [h.strip() for h in text.splitlines()[0].strip().strip("|").split(" | ")]
                col = {name: next((i for i, h in enumerate(header) if h.startswith(name)), None)
                       for name in ("paper", "ours", "full scale")}
                for line in text.splitlines()[2:]:
                    cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
                    gpu = cells[col["full scale"]] if col["full scale"] is not None else ""
                    rows.append(Row(nb_path.stem, cells[0], cells[col["paper"]], cells[col["ours"]], gpu, cells[-1]))
    return rows


def full_scale(fid: int) -> tuple[str, list]:
    """The finding's verdict at full scale from its parts' results files (simclr_book.fullscale), and the
    rows' records: "not measured yet" until every part of it has run on a GPU."""
    f = next(x for x in SPEC_FINDINGS if x.id == fid)
    if not f.rows:
        return "no full-scale part", []
    results = [read_results(p) for p in f.parts]
    if any(r is None for r in results):
        return "not measured yet", []
    records = [decide(row, results) for row in f.rows]
    if any(v is None for v in records):
        return "not measured yet", []
    return finding_verdict(records), records


def render() -> str:
    rows = chapter_rows()
    lines, detail, full = [], [], []
    counts = {"reproduced in trend": 0, "partly": 0, "not reproduced": 0}
    decided = {"reproduced in trend": 0, "partly": 0, "contradicted": 0, "not decided": 0, "not reproduced": 0}
    measured = 0
    for f in SPEC_FINDINGS:
        claim, where, prefixes = f.claim, f.where, PREFIXES[f.id]
        mine = [r for r in rows if r.finding.startswith(prefixes)]
        n_pos = sum(positive(r.verdict) for r in mine)
        if not mine:
            status, where_ours = "not reproduced", "no chapter tests it"
        else:
            status = ("reproduced in trend" if n_pos == len(mine) else "partly" if n_pos else "not reproduced")
            where_ours = ", ".join(sorted({f"[chapter {CHAPTER_TITLES[r.notebook].split('.')[0]}]({r.notebook}.ipynb)"
                                           for r in mine}))
        counts[status] += 1
        gpu_status, records = full_scale(f.id)
        at_gpu = bool(records) and all(v.status != SEEDS for v in records)   # the largest scale with its seeds
        measured += bool(records)
        final, scale = (gpu_status, "full scale") if at_gpu else (status, "`cpu`")
        decided[final] += 1
        lines.append(f"| {f.id} | {where}: {claim} | {where_ours} | {n_pos} of {len(mine)} | {status} | "
                     f"{gpu_status} | **{final}** ({scale}) |")
        for r in mine:
            detail.append(f"| {f.id} | {r.finding} | {r.paper} | {r.ours} | {r.verdict} |")
        for row in f.rows:
            full.append(f"| {f.id} | {row.label} | {row.paper} | {fullscale_cell(f, row)} |")
        if not f.rows:
            full.append(f"| {f.id} | {where}: {claim} | - | no full-scale part ({f.note}) |")
    total = len(SPEC_FINDINGS)
    final_line = ", ".join(f"{n} {k}" for k, n in decided.items() if n)
    head = [
        "# Findings at a glance",
        "",
        "The paper's findings that the book sets out to show, and what the book measured. At the `cpu` budget",
        "(the chapters' stored outputs, 2 CPU cores) a finding counts as *reproduced in trend* when every row",
        "of the chapters' findings tables that tests it shows the paper's direction beyond the noise (or",
        "verifies it), *partly* when some do. At full scale (the `gpu` budget, one GPU:",
        "`python -m simclr_book.fullscale PART`) its rows are decided by the book's one rule",
        "(`simclr_book.verdict`). Each finding is decided at the largest scale measured: full scale where",
        "every row has its seeds, else `cpu`. This page is generated by `python scripts/findings.py` from the",
        "stored notebooks and book/results/gpu (a test checks that it is up to date).",
        "",
        f"**At the `cpu` budget: {counts['reproduced in trend']} of {total} reproduced in trend, "
        f"{counts['partly']} partly, {counts['not reproduced']} not. At full scale: {measured} of {total} "
        f"measured. Decided at the largest scale measured: {final_line}.**",
        "",
        "| # | finding of the paper | chapter | `cpu` rows in the paper's direction | `cpu` | full scale | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    tail = ["", "## Every row at the `cpu` budget", "",
            "The rows of the chapters' findings tables: the paper's number, ours at the `cpu` budget and the",
            "chapter's verdict.", "",
            "| # | row | paper | ours (`cpu` budget) | verdict |", "|---|---|---|---|---|"]
    tail2 = ["", "## Every row at full scale", "",
             "The rows that decide each finding at the `gpu` budget (`simclr_book.specs`), each with the paper's",
             "number and its full-scale result, or the command that measures it.", "",
             "| # | row | paper | full scale (one GPU) |", "|---|---|---|---|"]
    return "\n".join(head + lines + tail + detail + tail2 + full) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail when book/findings.md is out of date")
    args = ap.parse_args()
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run python scripts/findings.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(text.split("\n\n")[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
