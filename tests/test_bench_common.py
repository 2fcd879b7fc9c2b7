"""benchmarks/_common.py: what a results file records about the commit it was measured from."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _common():
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "benchmarks" / "_common.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_commit_is_dirty_for_code_changes_but_not_for_results_files(tmp_path, monkeypatch):
    """One benchmark's JSON file in benchmarks/results/ must not mark the next benchmark's run `+dirty`
    (every CPU results file of 2026-11-28 said `+dirty` for that reason); an edited script must."""
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "bench_x.py").write_text("print(1)\n")
    (tmp_path / "benchmarks" / "results" / "x-cpu.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    C = _common()
    monkeypatch.setattr(C, "REPO", tmp_path)
    clean = C._git_commit_now()
    assert clean and "+dirty" not in clean
    (tmp_path / "benchmarks" / "results" / "x-cpu.json").write_text('{"new": 1}\n')   # a benchmark's output
    assert C._git_commit_now() == clean
    (tmp_path / "benchmarks" / "bench_x.py").write_text("print(2)\n")                 # the code changed
    assert C._git_commit_now() == clean + "+dirty"


def test_time_stats_median_min_max_of_unsorted_times():
    """The summary every benchmark writes: the middle of the sorted times (the upper one of an even count),
    min and max, the count, and the times in the order they were taken."""
    stats = _common().time_stats([3.0, 1.0, 2.0, 5.0])
    assert (stats["median_s"], stats["min_s"], stats["max_s"], stats["reps"]) == (3.0, 1.0, 5.0, 4)
    assert stats["times_s"] == [3.0, 1.0, 2.0, 5.0]
    empty = _common().time_stats([])
    assert empty["reps"] == 0 and empty["median_s"] != empty["median_s"]   # NaN
