"""scripts/book_gpu.py: each chapter's full-scale experiments, run here in quick mode (tiny settings, CPU)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from conftest import make_tree

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "book_gpu.py"


@pytest.fixture(scope="module")
def book_gpu():
    spec = importlib.util.spec_from_file_location("book_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("tree"))


@pytest.mark.parametrize("chapter,extra", [(1, {"pixels_knn", "random_encoder_knn"}),
                                           (4, {"tsne_silhouette"}), (6, {"knn_on_h", "linear_eval"})])
def test_quick_mode_writes_the_results_file(book_gpu, tree, tmp_path, chapter, extra):
    out = book_gpu.main(["--chapter", str(chapter), "--quick", "--data", str(tree), "--out", str(tmp_path / "r.json")])
    res = json.loads(out.read_text())
    # the command as given, without the machine's folders (benchmarks/_common.public_paths)
    assert res["command"] == f"python scripts/book_gpu.py --chapter {chapter} --quick --data PATH --out PATH"
    assert str(tree) not in out.read_text() and str(tmp_path) not in out.read_text()
    for key in ("chapter", "title", "device", "commit", "torch", "wall_time_s", "limit_s", "within_limit", "runs"):
        assert key in res, key
    assert res["chapter"] == chapter and res["quick"] is True and res["limit_s"] == 540
    assert res["device"].startswith("CPU") and res["train_images"] == 72 and res["test_images"] == 24
    names = [name for name, _ in book_gpu.CHAPTERS[chapter][1]]
    assert [r["name"] for r in res["runs"]] == names
    for run in res["runs"]:
        assert run["status"] == "completed" and run["steps"] == 2 and 0 <= run["knn_top1"] <= 1
        assert run["config"]["arch"] == "resnet10" and run["config"]["batch_size"] == 32 and run["wall_time_s"] > 0
    assert set(res["extra"]) == extra
    if chapter == 4:      # Fig. 8 on h and z for every head, the t-SNE silhouettes (in [-1, 1]) for the first
        for run in res["runs"]:
            e = run["eval"]
            assert all(0 <= e[k] <= 1 for k in ("knn_h", "lin_h", "knn_z", "lin_z")), e
            assert e["h_dim"] == 64 and e["z_dim"] == {"head_none": 64}.get(run["name"], 128), e
        assert (res["runs"][2]["eval"]["lin_z"], res["runs"][2]["eval"]["knn_z"]) == (
            res["runs"][2]["eval"]["lin_h"], res["runs"][2]["eval"]["knn_h"])    # no head: z is h
        tsne = res["extra"]["tsne_silhouette"]
        assert tsne["images"] == 24 and all(-1 <= tsne[k] <= 1 for k in ("h", "z"))
    else:
        assert all(0 <= (v["top1"] if isinstance(v, dict) else v) <= 1 for v in res["extra"].values())


def test_every_chapter_has_valid_full_scale_runs_within_the_limit(book_gpu):
    """The full-scale configs build and validate (no training): ResNet-18 on all images, a shared time budget."""
    assert sorted(book_gpu.CHAPTERS) == list(range(1, 8))
    assert book_gpu.TRAIN_MINUTES * 60 <= book_gpu.LIMIT_S - 120          # >= 2 minutes for start-up and evaluation
    for chapter, (title, runs, _) in book_gpu.CHAPTERS.items():
        minutes = book_gpu.TRAIN_MINUTES / len(runs)
        for name, overrides in runs:
            cfg = book_gpu.run_config(name, overrides, minutes, quick=False)
            cfg.validate()
            assert cfg.arch == "resnet18" and cfg.train_limit == 0 and cfg.test_limit == 0, (chapter, name)
            assert cfg.time_budget == pytest.approx(minutes) and cfg.knn_every == 0
            for field, value in overrides.items():
                assert getattr(cfg, field) == value


def test_bad_chapter_and_no_gpu_give_one_line_errors(book_gpu, tree):
    with pytest.raises(SystemExit, match="--chapter must be one of"):
        book_gpu.main(["--chapter", "9", "--quick", "--data", str(tree), "--out", "/dev/null"])
    with pytest.raises(SystemExit, match="--train-minutes must be in"):
        book_gpu.main(["--chapter", "1", "--quick", "--train-minutes", "7", "--data", str(tree)])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA GPU here"):
            book_gpu.main(["--chapter", "1"])


@pytest.mark.parametrize("path", sorted((SCRIPT.parents[1] / "book" / "results" / "gpu").glob("ch*.json")),
                         ids=lambda p: p.name)
def test_committed_full_scale_results_name_their_device_commit_and_runs(book_gpu, path):
    """Each committed results file is a full-scale run of its chapter's experiments on a named GPU, from a
    clean commit, within the time limit (the chapters print it beside their cpu results)."""
    res = json.loads(path.read_text())
    assert path.name == f"ch{res['chapter']:02d}.json" and res["quick"] is False
    assert not res["device"].startswith("CPU") and res["commit"] and "dirty" not in res["commit"]
    assert res["within_limit"] and res["wall_time_s"] <= res["limit_s"] == book_gpu.LIMIT_S
    assert res["train_images"] == 50000 and res["test_images"] == 10000
    assert [r["name"] for r in res["runs"]] == [name for name, _ in book_gpu.CHAPTERS[res["chapter"]][1]]
    for run in res["runs"]:
        assert run["status"] == "time_budget"             # each run's cosine schedule ends with its time share
        assert 0.1 < run["knn_top1"] <= 1 and run["config"]["arch"] == "resnet18"
