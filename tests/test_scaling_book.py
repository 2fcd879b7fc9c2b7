"""simclr_book.scaling_book: chapter 7's checks and tables."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from simclr_book import scaling_book as sb

ROOT = Path(__file__).resolve().parents[1]


def _images(n: int = 40, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.timeout(300)
def test_gather_check_under_torchrun_matches_one_process_and_catches_the_broken_variants(tmp_path):
    """Eqs. (7.2)-(7.5): with gradients through the gather and global BN, 2 gloo ranks compute the
    single-process loss and update; a detached gather keeps the loss but changes the update; per-rank
    BN changes the loss."""
    inp = sb.gather_inputs(_images(), n_pairs=8, tau=0.5)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    ranks, cmd, seconds = sb.run_gather_check(inp, 2, tmp_path, env)
    assert len(ranks) == 2 and seconds > 0 and "simclr_book.scaling_book" in cmd
    ref = sb.single_process_step(inp)
    d = sb.gather_diffs(ranks, ref)
    big = 1e-3 * ref["param_grad"].abs().max().item()
    assert d["exact"]["d_loss"] < 1e-12 and d["exact"]["d_z"] < 1e-12 and d["exact"]["d_p"] < 1e-10
    assert all(abs(r["exact"]["global_loss"] - ref["loss"]) < 1e-12 for r in ranks)
    assert d["detached"]["d_loss"] < 1e-12 and d["detached"]["d_p"] > big
    assert d["local BN"]["d_loss"] > 1e-6 and d["local BN"]["d_p"] > big


def test_gather_diffs_measures_each_rank_against_w_times_its_rows():
    torch.manual_seed(0)
    n_pairs, W, d = 4, 2, 3
    ref = dict(loss=torch.tensor(1.5), z_grad=torch.randn(2 * n_pairs, d), param_grad=torch.randn(7))
    n = n_pairs // W
    ranks = []
    for r in range(W):
        rows = torch.cat([torch.arange(r * n, (r + 1) * n), n_pairs + torch.arange(r * n, (r + 1) * n)])
        ranks.append({"v": dict(loss=torch.tensor(1.5 + (0.25 if r else -0.25)), z_grad=W * ref["z_grad"][rows],
                                param_grad=ref["param_grad"].clone())})
    out = sb.gather_diffs(ranks, ref)["v"]
    assert out == dict(loss=1.5, d_loss=0.0, d_z=0.0, d_p=0.0)
    ranks[1]["v"]["z_grad"][0, 0] += 0.5           # rank 1's first row: 0.5 off
    ranks[0]["v"]["param_grad"][3] -= 0.25
    out = sb.gather_diffs(ranks, ref)["v"]
    assert out["d_z"] == pytest.approx(0.5) and out["d_p"] == pytest.approx(0.25)


def test_gather_inputs_are_seeded_float64_views():
    a, b = sb.gather_inputs(_images(), 8), sb.gather_inputs(_images(), 8)
    assert a["x_a"].dtype == torch.float64 and a["x_a"].shape == (8, 3, 32, 32)
    assert torch.equal(a["x_a"], b["x_a"]) and not torch.equal(a["x_a"], a["x_b"])
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])


def test_image_tree_holds_every_kind_and_decodes_back(tmp_path):
    from PIL import Image

    from simclr_lite.data import load_dataset
    x = _images(24)
    y = torch.arange(24) % 2
    files = sb.write_image_tree(tmp_path, x, y, classes=2, per_class=8, split="train")
    assert len(files) == 16 and all(f.parent.name in ("n00000000", "n00000001") for f in files)
    kinds = {(Image.open(f).size, Image.open(f).mode) for f in files}
    assert kinds == {(size, mode) for size, mode, _, _ in sb.IMAGE_KINDS}
    dec, labels, classes = load_dataset(tmp_path, True, size=32)
    assert classes == ["n00000000", "n00000001"] and dec.shape == (16, 3, 32, 32)
    assert torch.equal(dec[0], x[0])                                 # the 32x32 RGB PNG is lossless
    gray = dec[1::len(sb.IMAGE_KINDS)]
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])


def test_pretrain_args_parse_on_the_command_line(tmp_path):
    from simclr_lite.__main__ import build_parser
    args = sb.pretrain_args(tmp_path / "tree", tmp_path / "out", 16, 16, 2, "--sync-bn", "off")
    ns = build_parser().parse_args(args[2:])
    assert (ns.image_size, ns.batch_size, ns.epochs, ns.arch, ns.width, ns.sync_bn) == (16, 16, 2, "resnet10",
                                                                                          0.125, "off")


def test_run_weights_and_metrics_read_a_run_folder(tmp_path):
    from simclr_lite.checkpoint import FORMAT, KEYS
    model = {"w": torch.ones(2, 2), "n": torch.tensor(3), "b": torch.zeros(3, dtype=torch.float32)}
    torch.save({**{k: 0 for k in KEYS}, "format": FORMAT, "model": model}, tmp_path / "checkpoint.pt")
    (tmp_path / "metrics.jsonl").write_text('{"kind": "step", "loss": 1.0}\n{"kind": "epoch", "loss": 0.5}\n')
    w = sb.run_weights(tmp_path)
    assert w.dtype == torch.float64 and w.tolist() == [1.0] * 4 + [0.0] * 3    # integer buffers left out
    assert [r["kind"] for r in sb.run_metrics(tmp_path)] == ["step", "epoch"]


def test_precision_forward_runs_autocast_and_keeps_the_loss_float32():
    from simclr_lite.models import build_simclr
    torch.manual_seed(0)
    model = build_simclr("resnet10", 0.125, True, "nonlinear", 16, 2).train()
    views = torch.rand(16, 3, 32, 32)
    out = sb.precision_forward(model, views, torch.bfloat16)
    assert list(out) == ["float32", "bf16 autocast"]
    assert out["float32"]["conv_dtype"] == torch.float32 and out["bf16 autocast"]["conv_dtype"] == torch.bfloat16
    assert out["bf16 autocast"]["loss"].dtype == torch.float32
    assert not torch.equal(out["float32"]["z"], out["bf16 autocast"]["z"])
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert not first_conv._forward_hooks                      # the hook is removed again


def test_forward_flops_counts_a_multiply_add_as_two():
    conv = torch.nn.Conv2d(3, 4, kernel_size=1, bias=False)
    assert sb.forward_flops(conv, 8) == 2 * 3 * 4 * 8 * 8


def test_imagenet_days_from_a_rate():
    tflops, days = sb.imagenet_days(1000.0, 1e9, 4e9, epochs=1, images=86_400)
    assert tflops == pytest.approx(1000 * 6 * 1e9 / 1e12)
    assert days == pytest.approx(86_400 * 6 * 4e9 / (tflops * 1e12) / 86_400)


def test_public_command_hides_absolute_paths_only():
    cmd = "SIMCLR_DATA=/data/cifar PYTHONPATH=/opt/me/repo python benchmarks/x.py --out ./r --f /a:/b"
    assert sb.public_command(cmd) == "SIMCLR_DATA=PATH PYTHONPATH=PATH python benchmarks/x.py --out ./r --f PATH"


def _bench(tmp_path: Path) -> dict:
    machine = {"device": "AMD EPYC", "device_slug": "cpu-amd"}
    files = {
        "distributed-cpu.json": {"benchmark": "distributed", "machine": machine, "date_utc": "2026-01-02T00:00",
                                 "command": "python /abs/bench.py",
                                 "settings": {"arch": "resnet10", "width": 0.5, "image_size": 32,
                                              "per_proc_batch": 64, "threads": 1},
                                 "results": [{"nproc": 1, "global_batch": 64, "sync_bn": "on", "images_per_s": 100.0,
                                              "step_time_s": 0.64, "per_rank": [{"peak_rss_mib": 900.0}]},
                                             {"nproc": 2, "global_batch": 128, "sync_bn": "on", "images_per_s": 150.0,
                                              "step_time_s": 0.85, "per_rank": [{"peak_rss_mib": 800.0},
                                                                                 {"peak_rss_mib": 850.0}]}],
                                 "ratios": {"2": {"speedup_vs_1": 1.5}}},
        "knn-gpu.json": {"benchmark": "knn", "machine": {"device": "H100", "device_slug": "nvidia-h100"},
                         "command": "python b.py",
                         "settings": {"n_train": 50000, "n_test": 10000, "dim": 512, "k": 200},
                         "results": {"knn_accuracy_s": {"median_s": 1.25}}},
        "knn-quick.json": {"benchmark": "knn", "quick": True, "machine": machine},
        "notes.json": {"something": "else"},
    }
    for name, rec in files.items():
        (tmp_path / name).write_text(json.dumps(rec))
    return sb.read_benchmarks(tmp_path)


def test_benchmark_files_become_the_chapters_tables(tmp_path):
    bench = _bench(tmp_path)
    assert sorted(bench) == ["distributed", "knn"] and len(bench["knn"]) == 1       # quick runs left out
    assert sb.gpu_benchmark_files(bench) == ["knn-gpu.json"]
    [(caption, header, rows)] = sb.distributed_tables(bench)
    assert "command: python PATH" in caption and len(header) == len(rows[0])
    assert rows == [(1, 64, "on", "100", "0.640", "900", 1.0), (2, 128, "on", "150", "0.850", "850", 1.5)]
    [row] = sb.benchmark_rows(bench)
    assert row[0].startswith("kNN monitor, 50,000 x 10,000") and row[1] == "1.2 s" and row[3] == "H100"
    assert sb.read_benchmarks(tmp_path / "absent") == {}


def test_commands_missing_reads_readme_continuations_and_the_slurm_script(tmp_path):
    assert sb.commands_missing(tmp_path, ["x"]) is None
    (tmp_path / "scripts").mkdir()
    (tmp_path / "README.md").write_text("run\n\n    torchrun --standalone \\\n      -m simclr_lite pretrain\n")
    (tmp_path / "scripts" / "slurm_pretrain.sh").write_text("\n".join(sb.SLURM_NEEDS[:-1]))
    missing = sb.commands_missing(tmp_path, ["torchrun --standalone -m simclr_lite pretrain", "sbatch x"])
    assert missing == (["sbatch x"], [sb.SLURM_NEEDS[-1]])


def test_the_repository_holds_the_chapters_commands():
    """The chapter's multi-GPU commands are the README's and the SLURM script does what the chapter says."""
    assert sb.commands_missing(ROOT, ["python -m simclr_lite pretrain --preset cifar10-gpu --data PATH --out runs/gpu",
                                      "sbatch --nodes=4 scripts/slurm_pretrain.sh /imagenet runs/in"]) == ([], [])


def test_scaling_rows_render_a_results_file():
    res = {"arms": [dict(arm="b512", batch_size=512, epochs=2, steps=194, images_per_s=14000.4, peak_memory_mib=None,
                         knn=0.5, linear=0.55, train_s=7.2)]}
    header, rows = sb.scaling_rows(res)
    assert len(header) == len(rows[0]) and rows[0][4] == "14,000" and "run cache" in rows[0][5]


def test_printing_helpers():
    assert sb.fmt_seconds(42.4) == "42 s" and sb.fmt_seconds(300) == "5.0 min" and sb.fmt_seconds("-") == "-"
    words = ("torchrun --standalone --nproc_per_node=2 -m simclr_lite pretrain " * 3).split()
    text = sb.shell(" ".join(words), width=40)
    assert text.replace(" \\\n", " ").split() == words
    assert all(line.endswith(" \\") for line in text.splitlines()[:-1])


def test_run_command_times_a_command_and_fails_loudly(tmp_path):
    assert sb.run_command([sys.executable, "-c", "pass"], tmp_path) > 0
    with pytest.raises(RuntimeError, match="boom"):
        sb.run_command([sys.executable, "-c", "import sys; sys.exit('boom')"], tmp_path)
    with pytest.raises(RuntimeError, match="timed out after 1 s"):
        sb.run_command([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path, timeout=1)
