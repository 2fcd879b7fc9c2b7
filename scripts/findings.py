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

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
OUT = BOOK / "findings.md"

# (finding of the paper, where the paper shows it, prefixes of the chapters' table rows that test it)
FINDINGS: list[tuple[str, str, tuple[str, ...]]] = [
    ("no single augmentation suffices; crop + colour is the key composition", "Fig. 5", ("Fig. 5:",)),
    ("crops of one image share a colour histogram, a shortcut", "Fig. 6", ("Fig. 6:",)),
    ("stronger colour distortion helps SimCLR, not supervised learning", "Table 1", ("Table 1:",)),
    ("bigger encoders help, and help SimCLR more than supervised learning", "Fig. 7", ("Fig. 7:",)),
    ("a nonlinear projection head is better than a linear one or none; h is better than z", "Fig. 8",
     ("Fig. 8:",)),
    ("h keeps information about the transformation that z = g(h) discards", "Table 3", ("Table 3:",)),
    ("t-SNE: classes are better separated in h than in z", "Fig. B.4", ("B.4: t-SNE",)),
    ("a linear projection head is approximately low-rank", "Fig. B.4", ("B.4: a linear head",)),
    ("NT-Xent beats the other losses; semi-hard mining helps them", "Table 4", ("Table 4:",)),
    ("l2 normalisation and the temperature matter", "Table 5", ("Table 5:",)),
    ("larger batches help most when training is short", "Fig. 9", ("Fig. 9:", "Fig. 9 (")),   # equal epochs;
    # chapter 5's equal-steps row ("Fig. 9's explanation") is a control, not the paper's comparison
    ("square-root learning-rate scaling helps small batches and short runs", "Appendix B.1",
     ("B.1: square-root",)),
    ("per-device batch norm leaks information; global BN removes the leak", "Sec. 2.2",
     ("Sec. 2.2: per-device BN", "Sec. 2.2: global BN", "Sec. 2.2, the real mechanism")),
    ("a SimCLR encoder fine-tuned on few labels beats training from scratch", "Table 7", ("Table 7:",)),
]
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
                col = {name: next(i for i, h in enumerate(header) if h.startswith(name))
                       for name in ("paper", "ours", "full scale")}
                for line in text.splitlines()[2:]:
                    cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
                    rows.append(Row(nb_path.stem, cells[0], cells[col["paper"]], cells[col["ours"]],
                                    cells[col["full scale"]], cells[-1]))
    return rows


def render() -> str:
    rows = chapter_rows()
    lines, counts = [], {"reproduced in trend": 0, "partly": 0, "not reproduced": 0}
    detail = []
    for k, (claim, where, prefixes) in enumerate(FINDINGS, 1):
        mine = [r for r in rows if r.finding.startswith(prefixes)]
        n_pos = sum(positive(r.verdict) for r in mine)
        if not mine:
            status = "not reproduced"
            where_ours = "no chapter tests it"
        else:
            status = ("reproduced in trend" if n_pos == len(mine) else "partly" if n_pos else "not reproduced")
            where_ours = ", ".join(sorted({f"[chapter {CHAPTER_TITLES[r.notebook].split('.')[0]}]({r.notebook}.ipynb)" for r in mine}))
        counts[status] += 1
        lines.append(f"| {k} | {where}: {claim} | {where_ours} | "
                     f"{n_pos} of {len(mine)} | **{status}** |")
        for r in mine:
            detail.append(f"| {k} | {r.finding} | {r.paper} | {r.ours} | {r.gpu} | {r.verdict} |")
    head = [
        "# Findings at a glance",
        "",
        "The paper's findings that the book sets out to show, and what the chapters' stored outputs (the `cpu`",
        "budget, 2 CPU cores) found. A finding counts as *reproduced in trend* when every row of the chapters'",
        "findings tables that tests it shows the paper's direction beyond the noise (or verifies it), *partly*",
        "when some do. Each verdict is decided in its chapter by a rule in code, beside the paper's number;",
        "this page is generated from the stored notebooks by `python scripts/findings.py` (a test checks that",
        "it is up to date).",
        "",
        f"**{counts['reproduced in trend']} of {len(FINDINGS)} reproduced in trend, {counts['partly']} partly, "
        f"{counts['not reproduced']} not** at the `cpu` budget.",
        "",
        "| # | finding of the paper | chapter | rows in the paper's direction | verdict |",
        "|---|---|---|---|---|",
    ]
    tail = ["", "## Every row", "",
            "The rows of the chapters' findings tables: the paper's number, ours at the `cpu` budget, the",
            "full-scale run's where the book has one (one H200, `scripts/book_gpu.py`), and the chapter's",
            "verdict, which is decided on the `cpu` column.", "",
            "| # | row | paper | ours (`cpu` budget) | full scale (GPU) | verdict |", "|---|---|---|---|---|---|"]
    return "\n".join(head + lines + tail + detail) + "\n"


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
