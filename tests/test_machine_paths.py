"""No tracked file records an absolute path of the machine it was made on.

Results files, READMEs and the chapters' stored outputs record commands and data sources; written on a
machine they pick up its folders (``SIMCLR_DATA=/scratch/ann/datasets``, ``--out /home/ann/out/ch02.json``,
``PYTHONPATH=/tmp/site``, a scratch folder ``/tmp/simclr_ch07_...``). Those say nothing to a reader of the
repository and differ from machine to machine; record ``PATH`` or a repo-relative path instead (the
benchmarks do, through ``benchmarks/_common.public_paths``).

Every tracked text file (json, jsonl, md, ipynb, py, sh, txt, yml, yaml, toml, cfg) is scanned; of a
notebook only what a run recorded (cell outputs and metadata), not the code or Markdown a cell holds.
A few paths are legitimate (a script's scratch default, this test's own samples): ``ALLOWED`` lists each
as (file, path, reason), and an entry that no longer matches anything must be removed.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT = {".json", ".jsonl", ".md", ".ipynb", ".py", ".sh", ".txt", ".yml", ".yaml", ".toml", ".cfg"}
#: An absolute path into a machine's own folders: /work/..., /root/..., /scratch/..., /tmp/<something>,
#: /home/<user>/..., /Users/<user>/... (not after a letter, digit, '.', '~' or '-': ``data/work/x`` or a
#: URL's ``host/tmp/x`` are not such paths); a path ends at a space, quote, bracket, ',', ';', ':' or '$'.
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work/|root/|scratch/|tmp/(?=[^\s\"'`)\],;:$])"
                          r"|(?:home|Users)/[^/\s\"'`]+/)[^\s\"'`)\],;:$]*")

#: (file, path as it appears, why it may stay). Each must still match something (no stale entries).
ALLOWED = [
    ("benchmarks/gpu_all.sh", "/tmp/site", "scratch install target of the benchmark-only wheels on the GPU "
                                          "machine; bench_*.py record it as PATH"),
    ("benchmarks/sweep_cpu_preset.py", "/tmp/sweep_cpu_preset", "the documented default of --work, a scratch "
                                                                "folder for the candidate runs"),
    ("scripts/device_check.sh", "/tmp/devout", "scratch folder on the device machine (results are copied to $OUT)"),
    ("scripts/device_check.sh", "/tmp/simclr_cache", "scratch decoded-image cache on the device machine"),
    ("scripts/device_check.sh", "/tmp/sweep", "scratch folder of the sweep's runs on the device machine"),
    ("scripts/device_check.sh", "/tmp/gpu-run/run.json", "scratch run folder on the device machine"),
    ("scripts/device_check.sh", "/tmp/gpu-run/metrics.jsonl", "scratch run folder on the device machine"),
    ("scripts/device_check.sh", "/tmp/gpu-run", "scratch run folder on the device machine"),
    ("tests/test_bench_common.py", "/scratch/ann/datasets", "a sample that public_paths must hide"),
    ("tests/test_bench_common.py", "/scratch/ann/benchdeps", "a sample that public_paths must hide"),
    ("tests/test_bench_common.py", "/home/ann/cifar", "a sample that public_paths must hide"),
    ("tests/test_bench_common.py", "/scratch/ann/runs/q", "a sample that public_paths must hide"),
    ("tests/test_bench_common.py", "/home/ann/out/x.json", "a sample that public_paths must hide"),
    ("tests/test_bench_common.py", "/scratch/ann/site", "a sample that public_paths must hide"),
    ("tests/test_bench_common.py", "/scratch/ann/o", "a sample that public_paths must hide"),
    ("tests/test_machine_paths.py", "*", "this test's own patterns and samples"),
]

#: What a notebook cell's output may hold that is not text a run printed (base64 can contain '/tmp/').
BINARY_MIME = ("image/", "application/pdf", "application/vnd")


def machine_paths(text: str) -> list[str]:
    """The absolute machine paths in ``text``."""
    return [m.group(0) for m in MACHINE_PATH.finditer(text)]


def notebook_records(nb: dict) -> list[tuple[str, str]]:
    """(where, text) of everything a run recorded in a notebook: outputs and metadata, not cell sources."""
    out = [("metadata", json.dumps(nb.get("metadata", {})))]
    for i, cell in enumerate(nb.get("cells", [])):
        out.append((f"cell {i} metadata", json.dumps(cell.get("metadata", {}))))
        for j, o in enumerate(cell.get("outputs", [])):
            where = f"cell {i} output {j}"
            for key in ("text", "traceback", "evalue", "ename"):
                if key in o:
                    out.append((where, "".join(o[key]) if isinstance(o[key], list) else str(o[key])))
            for mime, value in o.get("data", {}).items():
                if not mime.startswith(BINARY_MIME):
                    out.append((f"{where} {mime}", "".join(value) if isinstance(value, list) else json.dumps(value)))
            out.append((f"{where} metadata", json.dumps(o.get("metadata", {}))))
    return out


def records(path: Path) -> list[tuple[str, str]]:
    """(where, text) to scan in one file: a notebook's recorded parts, any other file's lines."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".ipynb":
        return notebook_records(json.loads(text))
    return [(f"line {n}", line) for n, line in enumerate(text.splitlines(), 1)]


def allowed(rel: str, found: str) -> bool:
    return any(f == rel and (p == "*" or p == found) for f, p, _ in ALLOWED)


@pytest.fixture(scope="module")
def tracked() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a checkout")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in out.split("\0") if f and Path(f).suffix in TEXT and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def found(tracked) -> list[tuple[str, str, str]]:
    """(file, where, path) of every machine path in the tracked text files, allowed ones included."""
    hits = []
    for rel in tracked:
        for where, text in records(ROOT / rel):
            hits += [(rel, where, p) for p in machine_paths(text)]
    return hits


def test_no_tracked_file_records_a_machine_path(tracked, found):
    kinds = {Path(f).suffix for f in tracked}
    assert len(tracked) > 60 and {".ipynb", ".json", ".md", ".py", ".sh"} <= kinds, (len(tracked), kinds)
    bad = [f"{rel} ({where}): {p}" for rel, where, p in found if not allowed(rel, p)]
    assert not bad, ("absolute paths of the machine a file was made on (record PATH or a repo-relative path; "
                     "benchmarks/_common.public_paths does it):\n" + "\n".join(bad))


def test_every_allowed_path_is_still_there(found):
    used = {(rel, p) for rel, _, p in found}
    stale = [(f, p) for f, p, _ in ALLOWED if p != "*" and (f, p) not in used]
    assert not stale, f"allow-list entries that match nothing any more (remove them): {stale}"


@pytest.mark.parametrize("text,paths", [
    ('"command": "SIMCLR_DATA=/scratch/ann/datasets python x.py"', ["/scratch/ann/datasets"]),
    ("python -m simclr_book.fullscale ch02-table1 --out /home/ann/out/t1.json", ["/home/ann/out/t1.json"]),
    ("| PYTHONPATH=/tmp/site python benchmarks/bench_knn.py |", ["/tmp/site"]),
    ("scratch folder for runs and trees: /tmp/simclr_ch07_f9luk13k\n", ["/tmp/simclr_ch07_f9luk13k"]),
    ("PYTHONPATH=/scratch/ann/benchdeps:/home/ann/simclr-book", ["/scratch/ann/benchdeps", "/home/ann/simclr-book"]),
    ("data in /home/alice/cifar10, or /Users/bob/data", ["/home/alice/cifar10", "/Users/bob/data"]),
    ("'/scratch/run1'", ["/scratch/run1"]),
    ("--data PATH --out PATH, 12.5 img/s, data/work/x, ratio 3/4", []),
    ("https://example.org/tmp/x and https://host/work/y", []),
    ("/dev/null, /proc/cpuinfo, /usr/bin/env, ~/.venvs/simclr-book, /tmp alone, /home/", []),
])
def test_detector_flags_machine_paths_and_nothing_else(text, paths):
    assert machine_paths(text) == paths


def test_notebooks_are_scanned_in_their_outputs_only():
    """A cell's code may name /tmp; what a run printed, displayed or recorded may not; images are skipped."""
    nb = {"metadata": {"kernelspec": {"name": "python3"}}, "cells": [
        {"cell_type": "code", "source": ["tmp = Path('/tmp/scratch')\n"], "metadata": {}, "outputs": [
            {"output_type": "stream", "name": "stdout", "text": ["saved in /home/ann/simclr-book/runs/x\n"]},
            {"output_type": "display_data", "metadata": {},
             "data": {"image/png": "iVBORw0/tmp/abc+/home/ann/x==", "text/markdown": ["| cmd | --data /home/ann/d |"]}},
            {"output_type": "error", "ename": "OSError", "evalue": "no /home/u/f", "traceback": []}]},
        {"cell_type": "markdown", "source": ["Set `--work /tmp/w` for scratch."], "metadata": {}}]}
    paths = [p for _, text in notebook_records(nb) for p in machine_paths(text)]
    assert paths == ["/home/ann/simclr-book/runs/x", "/home/ann/d", "/home/u/f"]


def test_allow_list_is_small_and_explained():
    assert len(ALLOWED) <= 20 and all(reason.strip() for _, _, reason in ALLOWED)
    assert all((ROOT / f).exists() for f, _, _ in ALLOWED)
