"""benchmarks/_common.py: what a results file records about the commit it was measured from."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _common():
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "benchmarks" / "_common.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository with a benchmark script, a benchmark result and a book result, committed."""
    monkeypatch.delenv("SIMCLR_COMMIT", raising=False)

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    for folder in ("benchmarks/results", "book/results/gpu"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "benchmarks" / "bench_x.py").write_text("print(1)\n")
    (tmp_path / "benchmarks" / "results" / "x-cpu.json").write_text("{}\n")
    (tmp_path / "book" / "results" / "gpu" / "ch01.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    return tmp_path


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_commit_is_dirty_for_code_changes_but_not_for_results_files(repo, monkeypatch):
    """One benchmark's JSON file in benchmarks/results/ (or one chapter's in book/results/) must not mark the
    next run `+dirty` (every CPU results file of 2026-11-28 said `+dirty` for that reason); an edited script
    must; an untracked file does not."""
    C = _common()
    monkeypatch.setattr(C, "REPO", repo)
    clean = C._git_commit_now()
    assert clean and "+dirty" not in clean and clean == C.git_commit_now(repo)
    (repo / "benchmarks" / "results" / "x-cpu.json").write_text('{"new": 1}\n')   # a benchmark's output
    (repo / "book" / "results" / "gpu" / "ch01.json").write_text('{"new": 1}\n')  # a chapter's output
    (repo / "notes.txt").write_text("untracked\n")
    assert C._git_commit_now() == clean
    (repo / "benchmarks" / "bench_x.py").write_text("print(2)\n")                 # the code changed
    assert C._git_commit_now() == clean + "+dirty"


def test_commit_outside_a_repository_is_none(tmp_path, monkeypatch):
    monkeypatch.delenv("SIMCLR_COMMIT", raising=False)
    assert _common().git_commit_now(tmp_path) is None


# ----------------------------------------------------------------------------- no machine paths recorded
@pytest.mark.parametrize("text,expected", [
    ("SIMCLR_DATA=/scratch/ann/datasets PYTHONPATH=/scratch/ann/benchdeps python benchmarks/bench_knn.py",
     "SIMCLR_DATA=PATH PYTHONPATH=PATH python benchmarks/bench_knn.py"),
    ("python benchmarks/cpu_quality.py --data /home/ann/cifar --run /scratch/ann/runs/q --out=/home/ann/out/x.json",
     "python benchmarks/cpu_quality.py --data PATH --run PATH --out=PATH"),
    ("PYTHONPATH=/scratch/ann/site:{repo} python x.py", "PYTHONPATH=PATH:. python x.py"),
    ("CIFAR-10 train from $SIMCLR_DATA={repo}/.devcarry", "CIFAR-10 train from $SIMCLR_DATA=.devcarry"),
    ("--data ~/datasets/cifar10", "--data PATH"),
    ("python -m simclr_book.fullscale ch05-fig9 --budget smoke --out results/fig9.json",
     "python -m simclr_book.fullscale ch05-fig9 --budget smoke --out results/fig9.json"),   # nothing to hide
    ("12.5 img/s, ratio 3/4, https://arxiv.org/abs/2002.05709",
     "12.5 img/s, ratio 3/4, https://arxiv.org/abs/2002.05709"),
])
def test_public_paths_hides_machine_folders(text, expected):
    C = _common()
    repo = str(C.REPO)
    assert C.public_paths(text.format(repo=repo)) == expected
    nested = C.public_paths({"a": [text.format(repo=repo), 3, None], "b": {"c": text.format(repo=repo)}})
    assert nested == {"a": [expected, 3, None], "b": {"c": expected}}


def test_recorded_command_line_has_no_machine_paths(monkeypatch):
    C = _common()
    monkeypatch.setattr(sys, "argv", [str(C.REPO / "benchmarks" / "bench_knn.py"), "--out", "/scratch/ann/o", "--reps", "2"])
    monkeypatch.setenv("SIMCLR_DATA", "/scratch/ann/datasets")
    monkeypatch.setenv("PYTHONPATH", f"/scratch/ann/site:{C.REPO}")
    monkeypatch.delenv("BENCH_QUICK", raising=False)
    assert C._command_line() == "SIMCLR_DATA=PATH PYTHONPATH=PATH:. python benchmarks/bench_knn.py --out PATH --reps 2"


def test_written_results_file_has_no_machine_paths(tmp_path, monkeypatch):
    """write_result scrubs the whole record, not only the command: e.g. a data source naming $SIMCLR_DATA."""
    import json
    import torch
    C = _common()
    monkeypatch.setattr(sys, "argv", ["benchmarks/bench_x.py", "--out", str(tmp_path)])
    info = {"device": "cpu", "versions": {}}
    path = C.write_result("x", torch.device("cpu"), {"settings": {"data": "CIFAR-10 train from $SIMCLR_DATA=/data/c"}},
                          out=str(tmp_path), machine_info=info)
    text = path.read_text()
    assert str(tmp_path) not in text and "/data/c" not in text
    record = json.loads(text)
    assert record["command"].endswith("python benchmarks/bench_x.py --out PATH")
    assert record["settings"]["data"] == "CIFAR-10 train from $SIMCLR_DATA=PATH"


def test_time_stats_median_min_max_of_unsorted_times():
    """The summary every benchmark writes: the middle of the sorted times (the upper one of an even count),
    min and max, the count, and the times in the order they were taken."""
    stats = _common().time_stats([3.0, 1.0, 2.0, 5.0])
    assert (stats["median_s"], stats["min_s"], stats["max_s"], stats["reps"]) == (3.0, 1.0, 5.0, 4)
    assert stats["times_s"] == [3.0, 1.0, 2.0, 5.0]
    empty = _common().time_stats([])
    assert empty["reps"] == 0 and empty["median_s"] != empty["median_s"]   # NaN
