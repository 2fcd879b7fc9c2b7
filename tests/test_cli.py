"""python -m simclr_lite: every bad input is one clear line, a non-zero exit, and nothing lost."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_tree

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--image-size", "16", "--arch", "resnet10", "--width", "0.125", "--batch-size", "24", "--epochs", "1",
        "--knn-k", "10", "--device", "cpu", "--no-progress", "--warmup-epochs", "0", "--compile", "false"]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "simclr_lite", *args], capture_output=True, text=True,
                          env=e, cwd=ROOT, timeout=300)


def one_line_error(p: subprocess.CompletedProcess, *words: str) -> None:
    assert p.returncode != 0, p.stdout
    err = p.stderr.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error:"), err
    for w in words:
        assert w in err, err


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("cli") / "tiny")


@pytest.fixture(scope="module")
def trained(tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "ok"
    p = cli("pretrain", "--data", str(tree), "--out", str(out), *TINY)
    assert p.returncode == 0, p.stderr
    assert "kNN top-1" in p.stdout
    return out


def test_pretrain_and_evaluate(trained, tree, capsys):
    """Each protocol keeps its latest result in eval_<protocol>.json (linear no longer erases kNN), eval.json
    is the latest of any, the values are those of the library on the run's data, and every printed
    accuracy says what it was measured on."""
    from simclr_lite.__main__ import main
    from simclr_lite.data import load_dataset
    from simclr_lite.evaluate import extract_features, knn_accuracy, linear_eval
    from simclr_lite.run import load_run

    for f in ("config.json", "metrics.jsonl", "checkpoint.pt", "run.json"):
        assert (trained / f).exists()
    assert main(["evaluate", str(trained), "--data", str(tree), "--protocol", "knn", "--k", "10", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    knn = json.loads((trained / "eval_knn.json").read_text())
    assert json.loads((trained / "eval.json").read_text()) == knn
    assert knn["protocol"] == "knn" and knn["k"] == 10 and "device" in knn
    model, _ = load_run(trained)
    xtr, ytr, classes = load_dataset(tree, True, size=16)
    xte, yte, _ = load_dataset(tree, False, size=16, classes=classes)
    ftr, fte = extract_features(model.encoder, xtr), extract_features(model.encoder, xte)
    assert knn["top1"] == knn_accuracy(ftr, ytr, fte, yte, k=10) > 0.5   # 3 separable classes: chance is 1/3
    assert (f"knn top-1 {knn['top1']:.4f} on 24 test images (k=10 nearest of a bank of 72 train images)"
            in out), out
    assert main(["evaluate", str(trained), "--data", str(tree), "--protocol", "linear", "--epochs", "5", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    linear = json.loads((trained / "eval_linear.json").read_text())
    assert linear["top1"] == linear_eval(ftr, ytr, fte, yte, epochs=5)["top1"] and linear["epochs"] == 5
    assert json.loads((trained / "eval_knn.json").read_text()) == knn                # kept
    assert json.loads((trained / "eval.json").read_text()) == linear                  # the latest
    assert (f"linear top-1 {linear['top1']:.4f}, top-5 1.0000 on 24 test images (a linear classifier on "
            f"frozen h of 72 train images, 5 epochs)") in out, out
    assert main(["evaluate", str(trained), "--data", str(tree), "--protocol", "finetune", "--epochs", "1", "--label-fraction", "0.5",
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    ft = json.loads((trained / "eval_finetune.json").read_text())
    assert ft["labelled_images"] == 36 and ft["label_fraction"] == 0.5 and ft["test_images"] == 24
    assert "on 24 test images (encoder + linear layer fine-tuned on 36 labelled train images" in out, out
    assert {p.name for p in trained.glob("eval*.json")} == {"eval.json", "eval_knn.json", "eval_linear.json",
                                                             "eval_finetune.json"}


def test_help_lists_every_flag_with_its_default():
    import dataclasses

    from simclr_lite.config import PRESETS, Config
    p = cli("pretrain", "--help")
    assert p.returncode == 0
    text = " ".join(p.stdout.split())          # argparse wraps lines: compare with spaces collapsed
    for flag in ("--epochs", "--batch-size", "--lr", "--temperature", "--seed", "--device", "--preset",
                 "--resume", "--data", "--out", "--print-config"):
        assert flag in p.stdout
    from simclr_lite.__main__ import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub.choices["pretrain"]._actions}
    shown = lambda v: str(v).lower() if isinstance(v, bool) else str(v)  # noqa: E731
    for f in dataclasses.fields(Config):
        if f.default is None:               # --data: its help names $SIMCLR_DATA and data/
            continue
        in_preset = PRESETS["cifar10-cpu"].get(f.name, f.default)
        tail = f"; cifar10-cpu: {shown(in_preset)})" if in_preset != f.default else ")"
        assert helps[f.name].endswith(f"(default: {shown(f.default)}{tail}"), (f.name, helps[f.name])
        assert "".join(helps[f.name].split()) in "".join(text.split()), f.name   # --help prints it (wrapped)
    assert "--batch-size BATCH_SIZE" in text and "(default: 512; cifar10-cpu: 256)" in text


def test_print_config_shows_a_presets_full_config_and_writes_nothing(tmp_path, capsys):
    import dataclasses

    from simclr_lite.__main__ import main
    from simclr_lite.config import preset
    out = tmp_path / "run"
    assert main(["pretrain", "--preset", "cifar10-gpu", "--print-config", "--lr", "2", "--out", str(out)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {"preset": "cifar10-gpu", **dataclasses.asdict(preset("cifar10-gpu", lr=2.0))}
    assert shown["arch"] == "resnet18" and shown["batch_size"] == 512 and shown["lr"] == 2.0
    assert not out.exists()
    # no --out needed; the preset rule "--epochs without --time-budget turns the budget off" is applied
    assert main(["pretrain", "--print-config", "--epochs", "3"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["preset"] == "cifar10-cpu" and shown["epochs"] == 3 and shown["time_budget"] == 0.0
    assert main(["pretrain", "--print-config", "--batch-size", "1"]) == 2       # validated like a run
    assert "batch size must be at least 2" in capsys.readouterr().err
    one_line_error(cli("pretrain", *TINY), "required", "--out")


@pytest.mark.parametrize("args,words", [
    (["--batch-size", "1"], ["batch size", "at least 2"]),
    (["--temperature", "0"], ["temperature", "> 0"]),
    (["--temperature", "-0.5"], ["temperature"]),
    (["--lr", "fast"], ["--lr", "float", "fast"]),
    (["--preset", "cifar100"], ["cifar100"]),
    (["--amp", "fp8"], ["--amp", "fp8"]),
])
def test_bad_values(tree, tmp_path, args, words):
    p = cli("pretrain", "--data", str(tree), "--out", str(tmp_path / "x"), *TINY, *args)
    one_line_error(p, *words)
    assert not (tmp_path / "x" / "checkpoint.pt").exists()


def test_missing_data_path(tmp_path):
    one_line_error(cli("pretrain", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"), *TINY),
                   "does not exist", "--data")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(cli("pretrain", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "x"), *TINY),
                   "train/", "--data PATH", "SIMCLR_DATA", "--download true")


def test_download_true_fetches_into_a_fresh_clones_data_folder(tmp_path, monkeypatch):
    """data/ of a fresh clone exists (it holds a README): `--download true` must fetch CIFAR-10 into it.
    torchvision's download is faked (no internet here): it extracts a tiny cifar-10-batches-py."""
    import pickle

    import numpy as np
    from torchvision.datasets import utils as tv_utils

    from simclr_lite.__main__ import main
    calls = []

    def fake(url, download_root, extract_root=None, filename=None, md5=None, remove_finished=False):
        calls.append(url)
        folder = Path(download_root) / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {"data": rng.integers(0, 256, (12, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(12)]}
            (folder / name).write_bytes(pickle.dumps(batch))
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake)
    data = tmp_path / "data"
    data.mkdir()
    (data / "README.md").write_text("Datasets land here.")
    monkeypatch.setenv("SIMCLR_DATA", str(data))      # no --data: the default root, as in a fresh clone
    assert main(["pretrain", "--out", str(tmp_path / "run"), *TINY, "--download", "true"]) == 0
    assert calls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "completed"


def test_corrupt_image(tmp_path):
    root = make_tree(tmp_path / "t", per_class=6)
    (root / "train" / "class1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    one_line_error(cli("pretrain", "--data", str(root), "--out", str(tmp_path / "x"), *TINY), "broken.png")
    p = cli("pretrain", "--data", str(root), "--out", str(tmp_path / "y"), *TINY, "--skip-bad-images", "true",
            "--batch-size", "6")
    assert p.returncode == 0, p.stderr


def test_checkpoint_from_another_architecture(trained, tree, tmp_path):
    before = (trained / "checkpoint.pt").read_bytes()
    one_line_error(cli("pretrain", "--data", str(tree), "--out", str(trained), *TINY, "--resume",
                       "--arch", "resnet18"), "arch")
    # a checkpoint whose weights are another model's, under this run's config
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text((trained / "config.json").read_text())
    ck = torch.load(trained / "checkpoint.pt", weights_only=True)
    ck["model"] = {k: v[..., :1] if v.ndim else v for k, v in ck["model"].items()}
    torch.save(ck, other / "checkpoint.pt")
    one_line_error(cli("evaluate", str(other)), "another architecture")
    assert (trained / "checkpoint.pt").read_bytes() == before


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "checkpoint.pt").write_text("hello")
    one_line_error(cli("evaluate", str(tmp_path / "r")), "not a readable simclr_lite checkpoint")
    one_line_error(cli("evaluate", str(tmp_path / "nothing")), "no checkpoint")


def test_output_folder_holds_another_run(trained, tree):
    before = (trained / "checkpoint.pt").read_bytes()
    one_line_error(cli("pretrain", "--data", str(tree), "--out", str(trained), *TINY), "already holds a run")
    assert (trained / "checkpoint.pt").read_bytes() == before


def test_every_config_field_has_help_text():
    import dataclasses

    from simclr_lite.__main__ import _HELP
    from simclr_lite.config import Config
    missing = [f.name for f in dataclasses.fields(Config) if not _HELP.get(f.name)]
    assert not missing, f"Config fields without --help text: {missing}"


@pytest.mark.parametrize("extra, budget", [([], 14.5), (["--epochs", "3"], 0.0),
                                           (["--epochs", "3", "--time-budget", "2"], 2.0)])
def test_explicit_epochs_turn_the_presets_time_budget_off(monkeypatch, tmp_path, extra, budget):
    """`--preset cifar10-cpu` trains for 14.5 minutes; `--epochs N` alone means N epochs, all of them."""
    from simclr_lite import __main__ as cli_main
    from simclr_lite import train
    seen = {}

    def fake_pretrain(cfg, out, resume=False, progress=True):
        seen["cfg"] = cfg
        return {}
    monkeypatch.setattr(train, "pretrain", fake_pretrain)
    assert cli_main.main(["pretrain", "--preset", "cifar10-cpu", "--out", str(tmp_path / "r"), *extra]) == 0
    assert seen["cfg"].time_budget == budget
