"""simclr_book.augmentation_study: chapter 2's displays and evaluations."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from simclr_book import augmentation_study as K  # noqa: E402
from simclr_book.budget import budget_sizes  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_paper_table1_reads_the_papers_columns():
    assert K.paper_table1("1/8") == (59.6, 77.0)
    assert K.paper_table1("1/2") == (62.6, 76.5)
    assert K.paper_table1("1 (+blur)") == (64.5, 75.4)
    assert all(len(v) == len(K.TABLE1_STRENGTHS) for v in K.PAPER_TABLE1.values())
    with pytest.raises(ValueError):
        K.paper_table1("2")


def test_as_image_takes_uint8_and_float_images():
    u = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 2).expand(3, 1, 2)
    a = K.as_image(u)
    assert a.shape == (1, 2, 3) and a.min() == 0.0 and a.max() == 1.0
    assert K.as_image(torch.full((3, 2, 2), 2.0)).max() == 1.0     # clipped for imshow


def test_image_grid_places_images_and_labels():
    imgs = [[torch.rand(3, 4, 4) for _ in range(3)] for _ in range(2)]
    fig, axes = K.image_grid(imgs, ["r0", "r1"], ["a", "b", "c"], "title", figsize=(3, 2))
    assert axes.shape == (2, 3)
    assert [ax.get_title() for ax in axes[0]] == ["a", "b", "c"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["r0", "r1"]
    assert torch.allclose(torch.tensor(axes[1, 2].images[0].get_array()), imgs[1][2].permute(1, 2, 0))
    with pytest.raises(ValueError):
        K.image_grid(imgs, ["r0"], ["a", "b", "c"], "title", figsize=(3, 2))


def test_intensity_histograms_are_fractions_of_pixel_values():
    v = torch.rand(5, 3, 8, 8)
    h = K.intensity_histograms(v, bins=16)
    assert h.shape == (5, 16) and torch.allclose(h.sum(1), torch.ones(5))
    half = torch.cat([torch.zeros(1, 3, 4, 8), torch.ones(1, 3, 4, 8)], dim=2)   # half black, half white
    assert K.intensity_histograms(half, bins=4).tolist() == [[0.5, 0.0, 0.0, 0.5]]


def test_histogram_matching_finds_images_by_their_colours():
    # each image a different uniform gray: every crop has its image's histogram, so matching is exact
    x = torch.linspace(0.02, 0.98, 16).view(16, 1, 1, 1).expand(16, 3, 32, 32).contiguous()
    acc, same, other = K.histogram_matching(x, 0.0, torch.Generator().manual_seed(0))
    assert acc == 1.0 and same == 0.0 and other > 0
    # colour distortion moves each crop's histogram: the matching can only get worse, and distances grow
    acc1, same1, _ = K.histogram_matching(x, 1.0, torch.Generator().manual_seed(0))
    assert acc1 <= acc and same1 > 0


def test_plot_crop_histograms_draws_each_image_without_and_with_colour():
    imgs = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8) for _ in range(2)]
    fig = K.plot_crop_histograms(imgs, ["cat", "dog"], torch.Generator().manual_seed(0), crops=3)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [f"{name}: {how}" for name in ("cat", "dog") for how in
                                                 ("without colour distortion", "with colour distortion (s = 1)")]
    assert all(len(ax.lines) == 3 for ax in panels)                 # one histogram per crop
    for ax in panels:                                               # each curve: % of the crop's values, sums to 100
        assert all(abs(line.get_ydata().sum() - 100) < 1e-3 for line in ax.lines)


def test_fig5_cell_names_follow_the_grid():
    assert K.fig5_cell_name("crop", "cutout") == "crop -> cutout"
    assert K.fig5_cell_name("color", "color") == "color alone"


def test_plot_fig5_grid_annotates_every_cell():
    grid = torch.tensor([[0.1, 0.2], [0.3, 0.4]])
    fig = K.plot_fig5_grid(grid, ["crop", "color"], "t")
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["10.0", "20.0", "30.0", "40.0"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["crop", "color"]
    with pytest.raises(ValueError):
        K.plot_fig5_grid(grid, ["crop"], "t")


def test_plot_short_vs_scale_draws_both_settings_per_cell():
    fig = K.plot_short_vs_scale({"crop alone": 0.3, "crop -> color": 0.25}, {"crop alone": 0.44, "crop -> color": 0.48},
                                0.2, 0.32, "short", "scale")
    ax = fig.axes[0]
    heights = [round(p.get_height(), 6) for p in ax.patches]
    assert heights == [30.0, 25.0, 44.0, 48.0]
    assert sorted(round(line.get_ydata()[0], 6) for line in ax.lines) == [20.0, 32.0]


def test_plot_table1_puts_ours_at_the_papers_columns():
    ours = {"SimCLR, linear evaluation": {"1/8": 0.48, "1/2": 0.51, "1": 0.47},
            "SimCLR, kNN (k = 200)": {"1/8": 0.46, "1/2": 0.48, "1": 0.45},
            "supervised from scratch": {"1/8": 0.53, "1/2": 0.50, "1": 0.46}}
    fig = K.plot_table1(ours, 0.32, "ours")
    left, right = fig.axes
    sim = left.lines[0]
    assert list(sim.get_xdata()) == [0, 2, 3] and [round(v, 6) for v in sim.get_ydata()] == [48.0, 51.0, 47.0]
    assert list(right.lines[0].get_ydata()) == list(K.PAPER_TABLE1["SimCLR (linear eval.)"])


def test_random_encoder_is_the_seeded_start_of_a_run():
    cfg = budget_sizes("smoke").config()
    a, b = K.random_encoder(cfg, "cpu", seed=0), K.random_encoder(cfg, "cpu", seed=0)
    c = K.random_encoder(cfg, "cpu", seed=1)
    pa, pb, pc = (torch.cat([p.flatten() for p in e.parameters()]) for e in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    from simclr_lite.models import build_simclr
    torch.manual_seed(0)
    ref = build_simclr(cfg.arch, cfg.width, cfg.cifar_stem, stem_stride=cfg.stem_stride).encoder
    assert torch.equal(pa, torch.cat([p.flatten() for p in ref.parameters()]))   # the head does not change f


def _two_colour_data(n: int = 64):
    """Class 0: dark images, class 1: bright ones (uint8): any encoder separates them linearly."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = (40 + 170 * y.view(-1, 1, 1, 1) + torch.randint(0, 30, (n, 3, 32, 32), generator=g)).to(torch.uint8)
    return x, y


def test_linear_top1_separates_separable_images():
    xtr, ytr = _two_colour_data()
    xte, yte = _two_colour_data(32)
    enc = K.random_encoder(budget_sizes("smoke").config(), "cpu")
    assert K.linear_top1(enc, (xtr, ytr, xte, yte), epochs=30, device="cpu") == 1.0
