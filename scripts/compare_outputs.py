"""Does a re-executed chapter reproduce its stored numbers? Compare two copies of a notebook's outputs.

Reads the printed text and Markdown tables of every cell of two executions of the same notebook (the
stored one and a new one, e.g. from a fresh clone with an empty run cache) and lists the lines that
differ once wall times (a number followed by s, ms or min) are masked: accuracies, losses, counts and
verdicts must match; how long a step took may not. Glued values are compared the same way.

    python scripts/compare_outputs.py book/06_evaluation.ipynb CLONE/book/06_evaluation.ipynb   # CLONE: the fresh clone

Prints each differing line (stored, then new) and a count; exits 1 when any line differs beyond wall
times. Lines that say whether a run was trained now or loaded from the run cache are expected to differ
between a cold and a warm execution and are reported but not counted.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

TIME = re.compile(r"\d+(?:\.\d+)?\s*(?:s|ms|min)\b")
CACHE_WORDS = ("from the run cache", "trained now", "TRAINED NOW", "LOADED", "from cache", "(cached)", "(loaded)")


def outputs(path: str | Path) -> list[tuple[int, str]]:
    """(cell index, line) for every line of stdout and Markdown output, wall times masked as ``T`` (also
    where a line break falls between a number and its unit); glued values as ``glue NAME = VALUE``."""
    nb = json.loads(Path(path).read_text())
    lines: list[tuple[int, str]] = []
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            glued = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if glued:
                value = "".join(next((v for k, v in data.items() if k.endswith("text/plain")), ""))
                lines.append((i, f"glue {glued} = {value}"))
            elif out.get("output_type") == "stream" and out.get("name") == "stdout":
                lines += [(i, line) for line in TIME.sub("T", "".join(out["text"])).splitlines()]
            elif "text/markdown" in data:
                lines += [(i, line) for line in TIME.sub("T", "".join(data["text/markdown"])).splitlines()]
    return lines


def differences(stored: str | Path, new: str | Path) -> tuple[list[tuple[int, str, str]], int, int]:
    """(lines that differ beyond wall times, lines compared, lines that differ only in cache state)."""
    a, b = outputs(stored), outputs(new)
    if len(a) != len(b):
        return [(-1, f"{len(a)} output lines", f"{len(b)} output lines")], min(len(a), len(b)), 0
    diffs, cache_lines = [], 0
    for (i, x), (_, y) in zip(a, b):
        if x == y:
            continue
        if any(w in x or w in y for w in CACHE_WORDS) or re.match(r"glue \w+_(min|s) = ", x):
            cache_lines += 1                       # cold vs warm cache, or a glued wall time
            continue
        diffs.append((i, x, y))
    return diffs, len(a), cache_lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stored")
    ap.add_argument("new")
    args = ap.parse_args(argv)
    diffs, n, cache_lines = differences(args.stored, args.new)
    for i, x, y in diffs:
        print(f"cell {i}:\n  stored: {x}\n  new:    {y}")
    print(f"{n} output lines compared: {len(diffs)} differ beyond wall times "
          f"({cache_lines} more differ only in a glued wall time or in whether a run was trained now or loaded "
          "from the cache)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
