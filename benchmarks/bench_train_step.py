"""Training-step benchmark: ResNet-18 (CIFAR stem) SimCLR pretraining throughput, simclr_lite vs lightly-style.

Measures:

1. Side by side, same model (ResNet-18, CIFAR stem, 2-layer head), same
   batch B, same LARS optimiser, same precision and memory format:
   * simclr_lite: data resident on the device as uint8, two views made by
     ``SimCLRAugment`` on the device, one forward of both views, ``nt_xent``
     (the step of ``simclr_lite/train.py``);
   * lightly-style: DataLoader workers (one per core) running lightly 1.6's
     ``SimCLRTransform`` per PIL image, two forwards, lightly's ``NTXentLoss``
     (the loop of lightly's CIFAR-10 benchmark);
   images/s of each and the ratio (target >= 1.5x), plus augmentation's share
   of a simclr_lite step (augmentation timed alone, and step time with
   pre-made views).
2. On a GPU only: one full CIFAR-10 epoch (50,000 images, two views, 97 steps
   of 512) of ``simclr_lite.train.pretrain`` itself (bf16 autocast,
   channels_last), timed as the second of two epochs so that start-up and
   compilation are excluded, without and with ``torch.compile`` (target < 8 s
   on an H100/H200), and once with ``nan_check_every = log_every = 97``
   (the per-step host sync of the default NaN check removed).

Also timed: the LARS step alone (the package's ``torch._foreach`` one and
its per-parameter reference, ``LARS(foreach=False)``); on a GPU, the step
with ``cudnn.benchmark`` on (PROPOSED, not in the package).

Data: CIFAR-10 from ``$SIMCLR_DATA`` if set, else this checkout's decoded
cache, else random uint8 images of CIFAR-10's shape (same cost per step; the
source is recorded in the JSON).

Figures: the JSON files in ``benchmarks/results/`` and benchmarks/README.md.

Writes ``benchmarks/results/train_step-<device-slug>.json``.

    python benchmarks/bench_train_step.py                    # CPU or GPU (auto)
    python benchmarks/bench_train_step.py --no-epoch         # GPU: skip the full-epoch runs
    BENCH_QUICK=1 python benchmarks/bench_train_step.py      # tiny sizes: checks the script runs
"""
from __future__ import annotations

import argparse
import time

import _common as C
import torch

from simclr_lite.augment import SimCLRAugment
from simclr_lite.augment_reference import torchvision_pipeline
from simclr_lite.losses import nt_xent
from simclr_lite.models import build_simclr
from simclr_lite.optim import build_optimizer

TEMPERATURE = 0.5


class _PairDataset(torch.utils.data.Dataset):
    """(view0, view1) of each image from a per-image transform, as lightly's LightlyDataset + SimCLRTransform."""

    def __init__(self, images: torch.Tensor, transform, pil: bool):
        self.images, self.transform, self.pil = images, transform, pil

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = self.images[i]
        if self.pil:
            from PIL import Image
            img = Image.fromarray(img.permute(1, 2, 0).numpy())
        out = self.transform(img)
        return tuple(out) if isinstance(out, (list, tuple)) else (out, self.transform(img))


def lightly_parts():
    """lightly's transform and loss, or the labelled stand-ins when lightly is not importable."""
    try:
        from lightly.loss import NTXentLoss
        from lightly.transforms import SimCLRTransform
        tf = SimCLRTransform(input_size=32, cj_strength=0.5, min_scale=0.08, gaussian_blur=0.0, normalize=None)
        return tf, NTXentLoss(temperature=TEMPERATURE), True, "lightly 1.6 SimCLRTransform (PIL) + NTXentLoss"
    except Exception:  # noqa: BLE001 (lightly or one of its imports missing)
        from bench_loss import _LightlyNTXentCopy
        return (torchvision_pipeline(32, 0.5), _LightlyNTXentCopy(TEMPERATURE), False,
                ("lightly not importable: simclr_lite.augment_reference.torchvision_pipeline per image + copy of lightly's "
                 "NTXentLoss"))


@torch.no_grad()
def new_model(dev: torch.device, channels_last: bool):
    torch.manual_seed(0)
    model = build_simclr("resnet18", 1.0, True, "nonlinear", 128).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.train()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=0, help="images per step (default: 512 on a GPU, 32 on a CPU, where one "
                    "ResNet-18 step on 64 views takes ~10 s on 2 cores)")
    ap.add_argument("--steps", type=int, default=0, help="timed steps per pipeline and block (default: 40 GPU, 6 CPU)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers of the lightly-style pipeline "
                                                           "(0: one per core)")
    ap.add_argument("--no-epoch", action="store_true", help="GPU: skip the full-epoch pretrain() runs")
    ap.add_argument("--no-compile", action="store_true", help="GPU: skip the torch.compile epoch")
    ap.add_argument("--force-epoch", action="store_true", help="run the epoch part on a CPU too (with "
                    "BENCH_QUICK=1: a syntax check of the GPU path)")
    ap.add_argument("--out", default=None, help="results folder (default: $OUT or benchmarks/results)")
    args = ap.parse_args()
    dev = C.pick_device(args.device)
    gpu = dev.type == "cuda"
    info = C.machine(dev)
    C.warn_if_busy(dev)
    B = args.batch or (512 if gpu else 32)
    steps = args.steps or (40 if gpu else 6)
    warm = 5 if gpu else 2
    if C.QUICK:
        B, steps, warm = 16, 2, 1
    workers = args.workers or C.cpu_cores()
    channels_last = True
    amp = torch.bfloat16 if gpu else None
    train_x, train_y, source = C.cifar10(train=True)
    test_x, test_y, _ = C.cifar10(train=False)
    if C.QUICK:   # a random subset (the decoded cache is sorted by class)
        keep, keep_te = torch.randperm(len(train_x))[:128], torch.randperm(len(test_x))[:64]
        train_x, train_y, test_x, test_y = train_x[keep], train_y[keep], test_x[keep_te], test_y[keep_te]
    print(f"ResNet-18 (CIFAR stem) SimCLR step, batch {B} images (2 views), LARS, "
          f"{'bf16 autocast, ' if amp else ''}channels_last on {C.device_name(dev)}; data: {source}", flush=True)

    def autocast():
        return torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None)

    # ------------------------------------------------------------------ simclr_lite step
    model = new_model(dev, channels_last)
    opt = build_optimizer(model, "lars", 1.0 * 2 * B / 256, 1e-6)
    aug = SimCLRAugment(32, strength=0.5)
    train_dev = train_x.to(dev)
    n = len(train_x)
    state = {"step": 0, "perm": torch.randperm(n)}

    def batch_idx():
        s = state["step"] % (n // B)
        if s == 0:
            state["perm"] = torch.randperm(n)
        state["step"] += 1
        return state["perm"][s * B:(s + 1) * B].to(dev)

    def make_views(x):   # one seeded generator per step and view, as simclr_lite.train does; one apply for both
        inp = aug.concat([x, x], [torch.Generator(device=dev).manual_seed(state["step"] * 2 + v) for v in range(2)])
        return inp.contiguous(memory_format=torch.channels_last) if channels_last else inp

    def model_step(inp):
        with autocast():
            _, z = model(inp)
        z_a, z_b = z.float().chunk(2)
        loss = nt_xent(z_a, z_b, TEMPERATURE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    def ours_step():
        return model_step(make_views(train_dev[batch_idx()]))

    per_step: dict[str, list[float]] = {"simclr_lite": [], "lightly_style": []}

    def run(step_fn, k, warmup=None, record=None):
        """Mean seconds per step of ``k`` steps after ``warmup``; on a CPU each step's time also goes to
        ``per_step[record]`` (a GPU is timed as one block, unsynchronised between steps)."""
        for _ in range(warm if warmup is None else warmup):
            step_fn()
        C.sync(dev)
        t0 = time.perf_counter()
        for _ in range(k):
            t1 = time.perf_counter()
            step_fn()
            if record is not None and not gpu:
                per_step[record].append(time.perf_counter() - t1)
        C.sync(dev)
        return (time.perf_counter() - t0) / k

    t_ours_first = run(ours_step, steps, record="simclr_lite")
    t_noaug = None
    if gpu or C.QUICK:   # CPU: skipped to stay within ~2 minutes (augmentation is timed alone below)
        fixed = make_views(train_dev[batch_idx()])
        t_noaug = run(lambda: model_step(fixed), steps)
    t_noaug_cudnn_bench = None
    if gpu:   # PROPOSED for train.py: cuDNN autotuning (shapes are fixed within a run)
        torch.backends.cudnn.benchmark = True
        t_noaug_cudnn_bench = run(lambda: model_step(fixed), steps)
        torch.backends.cudnn.benchmark = False
    t_aug = C.timeit(lambda: make_views(train_dev[batch_idx()]), dev, reps=max(steps, 3), warmup=2)["median_s"]
    # the optimiser step alone (gradients of the last step kept): the package's LARS (torch._foreach) and its
    # per-parameter reference (foreach=False)
    def opt_step(foreach: bool):
        opt.foreach = foreach
        opt.step()
        opt.foreach = True

    opt_times = C.timeit_many({"lars": lambda: opt_step(True), "lars_reference": lambda: opt_step(False)}, dev,
                              reps=20 if gpu else 3, warmup=2 if gpu else 1)
    t_opt, t_opt_ref = opt_times["lars"]["median_s"], opt_times["lars_reference"]["median_s"]
    ours_model, ours_opt = model, opt

    # ------------------------------------------------------------------ lightly-style step
    tf, lightly_loss, have_lightly, lightly_label = lightly_parts()
    model = new_model(dev, channels_last)
    opt = build_optimizer(model, "lars", 1.0 * 2 * B / 256, 1e-6)
    ds = _PairDataset(train_x, tf, pil=have_lightly)
    dl = torch.utils.data.DataLoader(ds, batch_size=B, shuffle=True, drop_last=True, num_workers=workers,
                                     persistent_workers=True, pin_memory=gpu, prefetch_factor=2)
    it = iter(dl)

    def lightly_step():
        nonlocal it
        try:
            x0, x1 = next(it)
        except StopIteration:
            it = iter(dl)
            x0, x1 = next(it)
        x0, x1 = x0.to(dev, non_blocking=True), x1.to(dev, non_blocking=True)
        if channels_last:
            x0, x1 = x0.contiguous(memory_format=torch.channels_last), x1.contiguous(memory_format=torch.channels_last)
        with autocast():
            _, z0 = model(x0)
            _, z1 = model(x1)
        loss = lightly_loss(z0.float(), z1.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    t_lightly = run(lightly_step, steps, record="lightly_style")
    shutdown = getattr(it, "_shutdown_workers", None)   # stop the persistent workers now, not at exit
    if shutdown is not None:
        shutdown()
    del model, opt
    # CPU: ours again after the lightly-style block (A-B-A), so that drifting load from other processes on
    # shared cores does not favour either side; its mean is the figure
    t_ours_again = None
    if not gpu:
        model, opt = ours_model, ours_opt
        t_ours_again = run(ours_step, steps, warmup=0, record="simclr_lite")
    t_ours = t_ours_first if t_ours_again is None else (t_ours_first + t_ours_again) / 2
    del ours_model, ours_opt

    ips_ours, ips_lightly = B / t_ours, B / t_lightly
    ratio = ips_ours / ips_lightly
    aug_share = t_aug / t_ours
    aug_share_noaug = None if t_noaug is None else max(0.0, 1 - t_noaug / t_ours)
    print(f"  simclr_lite step            {C.fmt_s(t_ours):>10s}  {ips_ours:9.1f} images/s")
    print(f"  lightly-style step          {C.fmt_s(t_lightly):>10s}  {ips_lightly:9.1f} images/s  ({lightly_label}, "
          f"{workers} workers)")
    print(f"  ratio simclr_lite / lightly-style: {ratio:.2f}x (target >= 1.5x: {'MET' if ratio >= 1.5 else 'MISSED'})")
    spread = {k: C.time_stats(v) for k, v in per_step.items() if v}
    if spread:   # CPU: the per-step spread, and the ratio of medians as a check on the ratio of means
        for k, v in spread.items():
            print(f"  {k} per step: min {C.fmt_s(v['min_s'])}, median {C.fmt_s(v['median_s'])}, "
                  f"max {C.fmt_s(v['max_s'])} ({v['reps']} steps)")
        if len(spread) == 2:
            print(f"  ratio of the median steps: {spread['lightly_style']['median_s'] / spread['simclr_lite']['median_s']:.2f}x")
    print(f"  simclr_lite: augmentation alone {C.fmt_s(t_aug)} = {aug_share:.1%} of a step"
          + ("" if t_noaug is None else f"; step on pre-made views {C.fmt_s(t_noaug)} (=> augmentation adds "
                                        f"{aug_share_noaug:.1%})"))
    if t_noaug_cudnn_bench is not None:
        print(f"  step on pre-made views with torch.backends.cudnn.benchmark = True (PROPOSED): "
              f"{C.fmt_s(t_noaug_cudnn_bench)} vs {C.fmt_s(t_noaug)}")
    print(f"  LARS optimiser step alone (torch._foreach): {C.fmt_s(t_opt)} ({t_opt / t_ours:.1%} of a step); "
          f"per-parameter reference {C.fmt_s(t_opt_ref)} ({t_opt_ref / t_ours:.1%})")
    print(f"  projected CIFAR-10 epoch (50,000 images) at these rates: simclr_lite {50000 / ips_ours:.1f} s, "
          f"lightly-style {50000 / ips_lightly:.1f} s", flush=True)

    # ------------------------------------------------------------------ GPU: full epochs of pretrain()
    epochs: dict = {}

    def save() -> None:
        """Write the JSON now (again after each full-epoch run, so a time limit never loses what was measured)."""
        targets = {"throughput_1.5x_lightly_style": {"ratio": round(ratio, 3), "met": ratio >= 1.5}}
        if gpu:
            targets["augment_under_10pct_of_step_gpu"] = {"fraction": round(aug_share, 4), "met": aug_share < 0.1}
        if epochs:
            targets["epoch_under_8s_gpu"] = {"epoch_s": {k: v["epoch_s"] for k, v in epochs.items()},
                                             "met": min(v["epoch_s"] for v in epochs.values()) < 8}
        C.write_result("train_step", dev, {
            "settings": {"model": "ResNet-18, CIFAR stem (3x3 stride 1, no max-pool), head 512-512-128",
                         "batch_images": B, "views": 2, "timed_steps": steps, "warmup_steps": warm,
                         "optimizer": "LARS (simclr_lite.optim), lr 1.0 x 2B/256", "temperature": TEMPERATURE,
                         "amp": "bf16" if amp else "off (float32)", "channels_last": channels_last,
                         "order": "simclr_lite, lightly-style" + ("" if gpu else ", simclr_lite again (mean of the two blocks)"),
                         "lightly_style_workers": workers, "lightly_style": lightly_label, "data": source},
            "results": {"simclr_lite_step_s": t_ours, "simclr_lite_step_s_blocks": [t_ours_first, t_ours_again],
                        "simclr_lite_images_per_s": round(ips_ours, 2),
                        "lightly_style_step_s": t_lightly, "lightly_style_images_per_s": round(ips_lightly, 2),
                        "ratio": round(ratio, 3), "per_step_cpu": spread,
                        "augment_alone_s": t_aug, "augment_fraction_of_step": round(aug_share, 4),
                        "step_on_premade_views_s": t_noaug,
                        "augment_fraction_by_difference": None if aug_share_noaug is None else round(aug_share_noaug, 4),
                        "step_on_premade_views_cudnn_benchmark_s": t_noaug_cudnn_bench,
                        "lars_step_s": t_opt, "lars_reference_step_s": t_opt_ref,
                        "lars_fraction_of_step": round(t_opt / t_ours, 4), "epochs": epochs},
            "targets": targets,
        }, args.out, machine_info=info)

    save()
    if (gpu or args.force_epoch) and not args.no_epoch:
        from simclr_lite.config import Config
        from simclr_lite.train import pretrain
        variants = [("eager", {"compile": False}),
                    ("eager_nan_check_every_97", {"compile": False, "nan_check_every": 97, "log_every": 97})]
        if not args.no_compile:
            variants.append(("compile", {"compile": True}))
        for name, over in variants:
            fields = {"arch": "resnet18", "width": 1.0, "cifar_stem": True, "epochs": 2, "batch_size": 512,
                      "lr": 1.0, "temperature": TEMPERATURE, "warmup_epochs": 1, "knn_every": 0, "log_every": 50,
                      "device": str(dev), "amp": "bf16" if gpu else "off", "channels_last": True}
            fields.update(over)
            if C.QUICK:
                fields.update(batch_size=32, log_every=2)
            cfg = Config(**fields)
            t0 = time.perf_counter()
            summary = pretrain(cfg, out=None, progress=False, data=(train_x, train_y, test_x, test_y))
            wall = time.perf_counter() - t0
            ep = [h for h in summary["history"] if h.get("kind") == "epoch"]
            steps_per_epoch = len(train_x) // cfg.batch_size
            epochs[name] = {"first_epoch_s": ep[0]["epoch_time_s"], "epoch_s": ep[1]["epoch_time_s"],
                            "steps_per_epoch": steps_per_epoch, "images_per_epoch": steps_per_epoch * cfg.batch_size,
                            "images_per_s": round(steps_per_epoch * cfg.batch_size / ep[1]["epoch_time_s"], 1),
                            "knn_top1_after_2_epochs": summary["knn_top1"], "wall_s_incl_setup_and_monitor": round(wall, 1),
                            "config_overrides": over}
            print(f"  pretrain() epoch [{name}]: {ep[1]['epoch_time_s']:.2f} s (first epoch {ep[0]['epoch_time_s']:.1f} s, "
                  f"{steps_per_epoch} steps x {cfg.batch_size}); kNN top-1 after 2 epochs {summary['knn_top1']:.3f}",
                  flush=True)
            del summary
            save()
            if gpu:
                torch.cuda.empty_cache()
        best = min(v["epoch_s"] for v in epochs.values())
        print(f"  target CIFAR-10 epoch < 8 s on one GPU: {'MET' if best < 8 else 'MISSED'} (best {best:.2f} s)")


if __name__ == "__main__":
    main()
