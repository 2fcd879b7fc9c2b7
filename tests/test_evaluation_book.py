"""simclr_book.evaluation_book: chapters 1 and 6's loops, step counts, verdict rows and figures."""
from __future__ import annotations

import dataclasses

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from simclr_book import evaluation_book as eb          # noqa: E402
from simclr_book.budget import budget_sizes, shared_config   # noqa: E402
from simclr_lite import evaluate                       # noqa: E402


def _features(n_train: int = 300, n_test: int = 80, d: int = 16, classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = 2 * torch.randn(classes, d, generator=g)
    ytr, yte = torch.arange(n_train) % classes, torch.arange(n_test) % classes
    return (centres[ytr] + torch.randn(n_train, d, generator=g), ytr,
            centres[yte] + torch.randn(n_test, d, generator=g), yte)


def test_knn_accuracy_vs_k_equals_the_package_at_every_k_and_temperature():
    htr, ytr, hte, yte = _features()
    ks = [1, 3, 10, 50]
    by_t = eb.knn_accuracy_vs_k(htr, ytr, hte, yte, ks, temperatures=(0.1, 1e6), chunk=7)   # several chunks
    for t, accs in by_t.items():
        assert accs == pytest.approx([evaluate.knn_accuracy(htr, ytr, hte, yte, k=k, temperature=t) for k in ks])


class _Tiny(torch.nn.Module):
    feat_dim = 8

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 8))

    def forward(self, x):
        return self.net(x)


def _images(n: int = 200, classes: int = 4):
    g = torch.Generator().manual_seed(1)
    return (torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g), torch.arange(n) % classes,
            torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=g), torch.arange(40) % classes)


def test_fine_tune_fractions_runs_both_starts_on_balanced_subsets_as_fine_tune_does():
    from simclr_lite.data import label_subset
    data = _images()
    torch.manual_seed(5)
    encoder = _Tiny()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    out = eb.fine_tune_fractions(encoder, _Tiny, data, {0.1: 2, 0.5: 1}, device="cpu", log=None)
    assert sorted(out) == [(0.1, "SimCLR"), (0.1, "scratch"), (0.5, "SimCLR"), (0.5, "scratch")]
    assert out[0.1, "SimCLR"]["labels"] == 20 and out[0.1, "SimCLR"]["per_class"] == 5
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in before.items())     # a copy was tuned
    idx = label_subset(data[1], 0.5, seed=0)          # the same run by hand: from scratch, seed 0
    torch.manual_seed(0)
    ref = evaluate.fine_tune(_Tiny(), data[0][idx], data[1][idx], data[2], data[3], epochs=1, seed=0, device="cpu")
    assert out[0.5, "scratch"]["top1"] == ref["top1"] and out[0.5, "scratch"]["top5"] == ref["top5"]


def test_linear_on_fractions_is_linear_eval_on_the_same_subsets():
    from simclr_lite.data import label_subset
    htr, ytr, hte, yte = _features()
    out = eb.linear_on_fractions(htr, ytr, hte, yte, [0.1, 1.0], epochs=5)
    idx = label_subset(ytr, 0.1, seed=0)
    assert out[0.1] == evaluate.linear_eval(htr[idx], ytr[idx], hte, yte, epochs=5, seed=0)
    assert out[1.0] == evaluate.linear_eval(htr, ytr, hte, yte, epochs=5, seed=0)


@pytest.mark.parametrize("protocol,labels,epochs", [("fine_tune", 300, 2), ("fine_tune", 40, 3),
                                                     ("linear_eval", 300, 2), ("linear_eval", 1500, 1)])
def test_optimiser_steps_counts_the_steps_each_protocol_takes(monkeypatch, protocol, labels, epochs):
    counted = []
    real = torch.optim.SGD.step
    monkeypatch.setattr(torch.optim.SGD, "step", lambda self, *a, **k: (counted.append(1), real(self, *a, **k))[1])
    batch = eb.default_batch(protocol)
    assert batch == {"fine_tune": 256, "linear_eval": 1024}[protocol]
    if protocol == "fine_tune":
        x = torch.randint(0, 256, (labels, 3, 8, 8), dtype=torch.uint8)
        evaluate.fine_tune(_Tiny(), x, torch.arange(labels) % 4, x[:8], torch.arange(8) % 4, epochs=epochs)
    else:
        h = torch.randn(labels, 4)
        evaluate.linear_eval(h, torch.arange(labels) % 4, h[:8], torch.arange(8) % 4, epochs=epochs)
    assert len(counted) == eb.optimiser_steps(labels, epochs, protocol)


def test_cli_command_parses_back_into_the_shared_config():
    from simclr_lite import config
    from simclr_lite.__main__ import build_parser
    cfg = shared_config(budget_sizes("smoke"), "main")
    command = eb.cli_command(cfg, "cifar10-cpu", 2048, 512, width=80)
    assert all(len(line) <= 80 for line in command.splitlines())
    words = command.replace("\\\n", " ").split()
    assert words[:5] == ["python", "-m", "simclr_lite", "pretrain", "--preset"] and "--train-limit" in words
    args = build_parser().parse_args(words[3:])
    cli = config.preset(args.preset, **{f.name: getattr(args, f.name) for f in dataclasses.fields(config.Config)
                                       if getattr(args, f.name) is not None})
    assert dataclasses.replace(cli, data=None, train_limit=0, test_limit=0) == cfg


def _ft(s1, r1, s10, r10):
    return {(0.01, "SimCLR"): dict(top1=s1), (0.01, "scratch"): dict(top1=r1),
            (0.1, "SimCLR"): dict(top1=s10), (0.1, "scratch"): dict(top1=r10)}


def test_table7_verdicts_follow_the_one_rule():
    from simclr_book.verdict import AGAINST, FLOOR, NOISE, PAPER
    frozen = {0.01: dict(top1=0.45), 0.1: dict(top1=0.60)}
    floor = {0.01: dict(top1=0.20), 0.1: dict(top1=0.62)}
    v = eb.table7_verdicts(_ft(0.50, 0.30, 0.61, 0.55), frozen, floor, n=10_000)
    assert list(v) == ["t7", "order", "ftlin"]
    assert v["t7"][0.01].status == PAPER and v["t7"][0.1].status == PAPER and v["order"].status == PAPER
    assert v["t7"][0.01].gap == pytest.approx(20.0)
    assert v["ftlin"][0.01].status == PAPER          # 50 vs 45, above the random encoder's 20
    assert v["ftlin"][0.1].status == FLOOR           # the frozen arm sits below its floor (60 < 62)
    v = eb.table7_verdicts(_ft(0.30, 0.50, 0.551, 0.55), frozen, floor, n=10_000)
    assert v["t7"][0.01].status == AGAINST and v["t7"][0.1].status == NOISE


def _run(points):
    hist = [dict(kind="epoch", epoch=e, loss=1.0, knn_top1=a, knn_bank=b) for e, a, b in points]
    return dict(history=hist, knn_test_images=10_000, steps=10)


def test_longer_training_verdict_reads_the_run_on_one_bank():
    text, cell = eb.longer_training_verdict(_run([(6, 0.40, 10000), (12, 0.50, 10000), (24, 0.40, 50000)]),
                                            floor=0.30)
    assert "epoch 6 -> 50.0% at epoch 12" in text and cell.startswith("reproduced")   # the 50,000 bank is left out
    assert eb.longer_training_verdict(_run([(24, 0.5, 50000)]), floor=0.3)[0] == "one kNN point"
    _, cell = eb.longer_training_verdict(_run([(6, 0.50, 10000), (12, 0.40, 10000)]), floor=0.3)
    assert cell.startswith("contradicted")


def test_as_image_scales_uint8_and_moves_channels_last():
    x = torch.full((1, 3, 4, 5), 255, dtype=torch.uint8)
    img = eb.as_image(x)
    assert img.shape == (4, 5, 3) and img.max() == 1.0
    assert eb.as_image(torch.full((3, 2, 2), 2.0)).max() == 1.0          # clamped


def test_plot_neighbours_counts_the_shown_neighbours_classes():
    xtr = torch.zeros(10, 3, 4, 4, dtype=torch.uint8)
    ytr = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, 0])
    xte, yte = torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 1])
    pred = torch.tensor([0, 2])
    q = {"right": dict(i=0, top_i=torch.tensor([0, 1, 2]), top_s=torch.ones(3), w=torch.ones(3)),
         "wrong": dict(i=1, top_i=torch.tensor([4, 5, 2]), top_s=torch.ones(3), w=torch.ones(3))}
    same = eb.plot_neighbours(q, (xtr, ytr, xte, yte), pred, show=3)
    assert same == {"right": 2, "right vote": 2, "wrong": 1, "wrong vote": 2}


def test_figures_draw_every_series():
    run = dict(history=[dict(kind="step", step=s, loss=5 - s / 10, lr=0.1) for s in range(1, 11)]
               + [dict(kind="epoch", epoch=e, step=5 * e, loss=5 - e, knn_top1=0.3 + e / 10,
                       knn_bank=100 if e < 2 else 400) for e in (1, 2)], steps=10, knn_test_images=50)
    cfg = shared_config(budget_sizes("smoke"), "main")
    ax = eb.plot_run(run, cfg, "t", learned_nothing=True)
    assert [line.get_label() for line in ax.get_lines()][:2] == [f"loss, mean of {cfg.log_every} steps",
                                                                  "loss, epoch mean"]
    eb.plot_knn_during_run(ax, run, {"raw pixels": 0.4, "random encoder": 0.3}, 400, 2)
    fig = eb.plot_knn_bars({"a": 0.3, "b": 0.5}, "t")
    assert len(fig.axes[0].patches) == 2
    fig = eb.plot_knn_vs_k([1, 10], {0.1: [0.5, 0.6], 1e6: [0.5, 0.55]}, 0.7, "t")
    weighted, majority = (list(line.get_ydata()) for line in fig.axes[0].get_lines()[:2])
    assert weighted == [50.0, 60.0] and majority == pytest.approx([50.0, 55.0])
    ft = {(f, s): dict(top1=0.5, top5=0.9, labels=n) for f, n in ((0.01, 5), (1.0, 500)) for s in ("SimCLR", "scratch")}
    fig = eb.plot_label_fractions(ft, {0.01: dict(top1=0.4, top5=0.8), 1.0: dict(top1=0.6, top5=0.9)}, "smoke")
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 6
    fig = eb.plot_views(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), (torch.rand(2, 3, 4, 4),) * 2, ["a", "b"])
    assert len(fig.axes) == 6 and fig.axes[0].get_title() == "a"
    import matplotlib.pyplot as plt
    plt.close("all")
