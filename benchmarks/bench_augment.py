"""Augmentation benchmark: two SimCLR views of a batch, batched ``SimCLRAugment`` vs per-image pipelines.

Measures the time to make two views (CIFAR-10 recipe: 32x32 crop 0.08-1 +
flip, colour distortion s = 0.5, grayscale p = 0.2, no blur) of a batch of B
uint8 images with

* ``simclr_lite.augment.SimCLRAugment`` (batched tensor ops on the device;
  on a CPU with all threads and with 1 thread),
* ``simclr_lite.augment_reference.torchvision_pipeline`` (the same parameters, per
  image) in one process and in DataLoader workers on all the same cores,
* lightly 1.6's ``SimCLRTransform`` (PIL, per image) in DataLoader workers,
* kornia 0.9's batched ``AugmentationSequential`` equivalent, same device,

with the ratios measured side by side in this run (target: >= 10x the
per-image pipeline and kornia), and checks that the batched views have the
statistics of the per-image reference (per-image mean, std, saturation,
grayscale fraction, red-blue balance; z-scores of the differences). It counts
the kernels per view on the GPU code path (aten ops on ``meta`` tensors; the
pre-fusion code's count, 294, is stored in ``tests/golden/augment_views.npz``). On a GPU it also
times one ResNet-18 (CIFAR stem) training step at the same batch (bf16,
channels_last, LARS) for augmentation's share of a step (target < 10%), and a
compiled variant (``SimCLRAugment.draw`` eager, then
``torch.compile(SimCLRAugment.apply)``; not what training uses).

The two views are made the way training makes them, ``SimCLRAugment.concat``
with one seeded generator per view. Figures: the JSON files in
``benchmarks/results/`` and benchmarks/README.md.

Writes ``benchmarks/results/augment-<device-slug>.json``.

    python benchmarks/bench_augment.py                 # CPU or GPU (auto)
    python benchmarks/bench_augment.py --blur --size 96  # ImageNet-style recipe with blur
    BENCH_QUICK=1 python benchmarks/bench_augment.py   # tiny sizes: checks the script runs
"""
from __future__ import annotations

import argparse
import math
import time

import _common as C
import torch

from simclr_lite.augment import SimCLRAugment, blur_kernel_size
from simclr_lite.augment_reference import torchvision_pipeline


# ----------------------------------------------------------------------------- kernel launches
def kernel_count(fn) -> dict:
    """Aten ops ``fn`` dispatches: all, and those that are not views (each one kernel launch on a GPU).

    Run on ``meta`` tensors, which take the GPU code path (``torch.where``
    instead of the CPU's indexing) without computing anything.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    counts = {"aten_ops": 0, "kernels": 0}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            counts["aten_ops"] += 1
            if not func.is_view and func.overloadpacket.__name__ not in ("empty", "scalar_tensor", "lift_fresh"):
                counts["kernels"] += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return counts


def launches_per_view(aug: SimCLRAugment, B: int, size: int) -> dict:
    """Kernels per view of one call, of two views through ``concat``, and (stored, not measured here) of the
    code before the fused colour steps, for the default recipe at 32 x 32."""
    x = torch.empty(B, 3, size, size, dtype=torch.uint8, device="meta")
    out = {"one_call": kernel_count(lambda: aug(x)),
           "concat_two_views_per_view": {k: v / 2 for k, v in kernel_count(
               lambda: aug.concat([x, x], [None, None])).items()}}
    golden = C.REPO / "tests" / "golden" / "augment_views.npz"
    if golden.exists() and size == 32 and not aug.blur:
        import numpy as np
        with np.load(golden, allow_pickle=False) as z:
            out["before_fused_colour_steps"] = {
                "kernels": int(z["v1_kernels_per_view"]),
                "source": "stored: counted on the pre-fusion code by tests/golden/make_golden.py (torch 2.14.1)"}
    return out


# ----------------------------------------------------------------------------- the contenders
class _Views(torch.utils.data.Dataset):
    """Two views per image with a per-image transform (what DataLoader workers run in lightly-style code)."""

    def __init__(self, images, transform, pil: bool = False):
        if pil:
            from PIL import Image
            images = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = self.images[i]
        out = self.transform(img)
        return tuple(out) if isinstance(out, (list, tuple)) else (out, self.transform(img))


def lightly_transform(size: int, strength: float, blur: bool):
    try:
        from lightly.transforms import SimCLRTransform
    except Exception:  # noqa: BLE001 (lightly or one of its imports missing)
        return None
    return SimCLRTransform(input_size=size, cj_strength=strength, min_scale=0.08,
                           gaussian_blur=0.5 if blur else 0.0, normalize=None)


def kornia_augment(size: int, strength: float, blur: bool):
    try:
        import kornia.augmentation as K
    except Exception:  # noqa: BLE001 (kornia or kornia_rs missing)
        return None
    s = strength
    ops = [K.RandomResizedCrop((size, size), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
           K.RandomHorizontalFlip(p=0.5),
           K.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=0.8),
           K.RandomGrayscale(p=0.2)]
    if blur:
        k = blur_kernel_size(size)
        ops.append(K.RandomGaussianBlur((k, k), (0.1, 2.0), p=0.5))
    return K.AugmentationSequential(*ops)


def loader_throughput(dataset, batch: int, workers: int, batches: int) -> dict:
    """Seconds per batch of two views from DataLoader workers, after the workers have started."""
    dl = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers, shuffle=False,
                                     drop_last=True, persistent_workers=False, prefetch_factor=2)
    it = iter(dl)
    for _ in range(max(1, workers)):   # warm-up: every worker has produced one batch
        next(it)
    times = []
    for _ in range(batches):
        t0 = time.perf_counter()
        try:
            next(it)
        except StopIteration:
            break
        times.append(time.perf_counter() - t0)
    del it, dl
    # median and min over the batches, each timed alone: with W workers in flight a batch can arrive at once
    # (min) while the steady rate is the mean, recorded too
    return {**C.time_stats(times), "mean_s": sum(times) / max(1, len(times))}


# ----------------------------------------------------------------------------- statistics
def per_image_stats(views: torch.Tensor) -> dict[str, torch.Tensor]:
    v = views.float().cpu().clamp(0, 1)
    chan_spread = v.amax(1) - v.amin(1)
    return {"mean": v.mean((1, 2, 3)), "std": v.flatten(1).std(1), "saturation": chan_spread.mean((1, 2)),
            "grayscale": (chan_spread.amax((1, 2)) < 1e-6).float(),
            "red_minus_blue": (v[:, 0] - v[:, 2]).mean((1, 2))}


def compare_stats(ref: dict, other: dict) -> dict:
    out = {}
    for k in ref:
        a, b = ref[k], other[k]
        se = math.sqrt(a.var().item() / len(a) + b.var().item() / len(b)) or 1e-12
        out[k] = {"reference": round(a.mean().item(), 4), "this": round(b.mean().item(), 4),
                  "z": round((b.mean().item() - a.mean().item()) / se, 2)}
    return out


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=512, help="images per batch (two views each)")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--strength", type=float, default=0.5)
    ap.add_argument("--blur", action="store_true")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers (0: one per core)")
    ap.add_argument("--stats-images", type=int, default=2048, help="images for the statistics check")
    ap.add_argument("--step-fraction", action="store_true",
                    help="also on a CPU: time a ResNet-18 step and report augmentation's share (always on a GPU)")
    ap.add_argument("--proposed", choices=("auto", "on", "off"), default="auto",
                    help="also time the PROPOSED compiled augmentation (auto: on a GPU only; CPU compile ~20 s)")
    ap.add_argument("--out", default=None, help="results folder (default: $OUT or benchmarks/results)")
    args = ap.parse_args()
    if C.QUICK:
        args.batch, args.stats_images = 32, 64
    dev = C.pick_device(args.device)
    gpu = dev.type == "cuda"
    info = C.machine(dev)
    C.warn_if_busy(dev)
    cores = C.cpu_cores()
    workers = args.workers or cores
    threads = torch.get_num_threads()
    B = args.batch
    train_x, _, source = C.cifar10(train=True)
    train_x = train_x[torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))]  # mix the classes
    x_cpu = train_x[:B].clone()
    if args.size != 32:   # an ImageNet-style check: upscale the CIFAR images to the input size
        x_cpu = torch.nn.functional.interpolate(x_cpu.float(), size=args.size, mode="bilinear",
                                                antialias=False).round().clamp(0, 255).to(torch.uint8)
    x_dev = x_cpu.to(dev)
    print(f"two views of {B} images {args.size}x{args.size} (s={args.strength}, blur={args.blur}) on "
          f"{C.device_name(dev)}; data: {source}", flush=True)

    aug = SimCLRAugment(args.size, strength=args.strength, blur=args.blur)
    tv = torchvision_pipeline(args.size, strength=args.strength, blur=args.blur)
    lt = lightly_transform(args.size, args.strength, args.blur)
    ka = kornia_augment(args.size, args.strength, args.blur)
    step = [0]

    def ours(x=x_dev, device=dev):
        step[0] += 1    # like simclr_lite.train: one seeded generator per step and view; one apply for both
        return aug.concat([x, x], [torch.Generator(device=device).manual_seed(step[0] * 2 + v) for v in range(2)])

    launches = launches_per_view(aug, B, args.size)
    print(f"  kernels per view (GPU code path, counted on meta tensors): {launches}", flush=True)

    rows, labels = {}, {}
    reps = 3 if C.QUICK else (30 if gpu else 5)
    labels["simclr_lite"] = f"SimCLRAugment, batched on {dev.type}" + ("" if gpu else f" ({threads} threads)")
    rows["simclr_lite"] = C.timeit(ours, dev, reps=reps, warmup=3 if gpu else 1)
    if not gpu:
        torch.set_num_threads(1)
        labels["simclr_lite_1thread"] = "SimCLRAugment, batched on cpu (1 thread)"
        rows["simclr_lite_1thread"] = C.timeit(lambda: ours(x_cpu, torch.device("cpu")), dev, reps=3, warmup=1)
        labels["torchvision_1process"] = "torchvision_pipeline per image, 1 process (1 thread)"
        rows["torchvision_1process"] = C.timeit(
            lambda: torch.stack([tv(im) for v in range(2) for im in x_cpu]), dev, reps=1 if C.QUICK else 2, warmup=0)
        torch.set_num_threads(threads)
    n_batches = 2 if C.QUICK else (10 if gpu else 3)
    data_len = B * (workers + n_batches + 1)
    reps_idx = torch.arange(data_len) % len(train_x)
    big = train_x[reps_idx]
    if args.size != 32:
        big = x_cpu[torch.arange(data_len) % B]
    labels["torchvision_workers"] = f"torchvision_pipeline per image, DataLoader {workers} workers"
    rows["torchvision_workers"] = loader_throughput(_Views(big, tv), B, workers, n_batches)
    if lt is not None:
        labels["lightly_workers"] = f"lightly SimCLRTransform (PIL) per image, DataLoader {workers} workers"
        rows["lightly_workers"] = loader_throughput(_Views(big, lt, pil=True), B, workers, n_batches)
    if ka is not None:
        ka = ka.to(dev)
        labels["kornia"] = f"kornia AugmentationSequential, batched on {dev.type}"
        rows["kornia"] = C.timeit(lambda: torch.cat([ka(x_dev.float() / 255), ka(x_dev.float() / 255)]), dev,
                                  reps=reps, warmup=2)

    # per call: the median; DataLoader rows: the steady rate (mean over batches; single batches arrive in bursts)
    t = {k: v.get("mean_s", v["median_s"]) for k, v in rows.items()}
    for k, v in rows.items():
        print(f"  {labels[k]:66s} {C.fmt_s(t[k]):>10s}/batch  {2 * B / t[k]:10.0f} views/s", flush=True)
    ratios = {f"{k}_over_simclr_lite": round(t[k] / t["simclr_lite"], 2) for k in t
              if k not in ("simclr_lite", "simclr_lite_1thread")}
    # on a CPU: SimCLRAugment's best setting on these cores (all threads, or 1 thread: small ops on cores shared
    # with other processes can run slower with more threads) against the per-image pipelines using all cores
    best_key = "simclr_lite"
    if "simclr_lite_1thread" in t:
        best_key = min(("simclr_lite", "simclr_lite_1thread"), key=t.get)
        for k in ("torchvision_workers", "lightly_workers", "kornia"):
            if k in t:
                ratios[f"{k}_over_simclr_lite_1thread"] = round(t[k] / t["simclr_lite_1thread"], 2)
        ratios["per_core_torchvision_1process_over_simclr_lite_1thread"] = round(
            t["torchvision_1process"] / t["simclr_lite_1thread"], 2)
    t_best = t[best_key]
    print(f"  SimCLRAugment's best setting here: {labels[best_key]} ({C.fmt_s(t_best)})")
    for k, r in ratios.items():
        print(f"  ratio {k}: {r}x")

    # ---- same output statistics as the per-image reference
    n_stats = min(args.stats_images, len(train_x))
    xs = train_x[:n_stats]
    if args.size != 32:
        xs = x_cpu[torch.arange(n_stats) % B]
    torch.manual_seed(0)
    ref_views = torch.stack([tv(im) for im in xs])
    stat_views = {"simclr_lite": torch.cat([aug(xs[i:i + 512].to(dev), generator=torch.Generator(device=dev)
                                                .manual_seed(100 + i)) for i in range(0, n_stats, 512)])}
    if lt is not None:
        stat_views["lightly"] = torch.stack([lt.transforms[0](im) for im in _Views(xs, lt, pil=True).images])
    if ka is not None:
        stat_views["kornia"] = torch.cat([ka(xs[i:i + 512].to(dev).float() / 255) for i in range(0, n_stats, 512)])
    ref_stats = per_image_stats(ref_views)
    stats = {k: compare_stats(ref_stats, per_image_stats(v)) for k, v in stat_views.items()}
    print(f"  output statistics vs torchvision_pipeline per image ({n_stats} views each; mean, z of difference):")
    for name, st in stats.items():
        print(f"    {name:12s} " + "  ".join(f"{k} {v['this']:.4f} (ref {v['reference']:.4f}, z {v['z']:+.1f})"
                                            for k, v in st.items()))
    same_stats = all(abs(v["z"]) < 4 for v in stats["simclr_lite"].values())
    print(f"  simclr_lite statistics equal to the reference (|z| < 4 for all): {same_stats}")

    # ---- GPU: augmentation's share of a ResNet-18 training step at this batch
    step_info = None
    if gpu or args.step_fraction:
        from simclr_lite.losses import nt_xent
        from simclr_lite.models import build_simclr
        from simclr_lite.optim import build_optimizer
        torch.manual_seed(0)
        model = build_simclr("resnet18", 1.0, True, "nonlinear", 128).to(dev).to(memory_format=torch.channels_last)
        opt = build_optimizer(model, "lars", 0.3 * 2 * B / 256, 1e-6)
        views = ours().contiguous(memory_format=torch.channels_last)

        def train_step():
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=gpu):
                _, z = model(views)
            z_a, z_b = z.float().chunk(2)
            loss = nt_xent(z_a, z_b, 0.5)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        t_step = C.timeit(train_step, dev, reps=20 if gpu else 1, warmup=5 if gpu else 1)
        frac = t["simclr_lite"] / (t["simclr_lite"] + t_step["median_s"])
        step_info = {"model_step_s": t_step, "augment_s": t["simclr_lite"], "augment_fraction_of_step": round(frac, 4),
                     "note": "ResNet-18 CIFAR stem, bf16 autocast, channels_last, LARS, nt_xent; "
                             "augmentation timed alone (synchronised), so its share is an upper bound"}
        print(f"  ResNet-18 step (fwd+bwd+LARS, {2 * B} views, {'bf16' if gpu else 'fp32'}): {C.fmt_s(t_step['median_s'])}; augmentation "
              f"{C.fmt_s(t['simclr_lite'])} = {frac:.1%} of a step (target < 10%: {'MET' if frac < 0.1 else 'MISSED'})")

    base = t.get("torchvision_workers")
    targets = {
        "10x_torchvision_per_image_same_cores": {
            "simclr_lite_setting": labels[best_key], "ratio": None if base is None else round(base / t_best, 2),
            "met": base is not None and base / t_best >= 10},
        "10x_kornia": {"simclr_lite_setting": labels[best_key],
                       "ratio": None if "kornia" not in t else round(t["kornia"] / t_best, 2),
                       "met": None if "kornia" not in t else t["kornia"] / t_best >= 10},
        "same_output_statistics": {"met": same_stats},
    }
    if step_info is not None and gpu:
        targets["under_10pct_of_resnet18_step_gpu"] = {"fraction": step_info["augment_fraction_of_step"],
                                                        "met": step_info["augment_fraction_of_step"] < 0.1}
    for k, v in targets.items():
        print(f"  target {k}: {'MET' if v['met'] else ('n/a' if v['met'] is None else 'MISSED')} {v}")
    payload = {
        "settings": {"batch": B, "views": 2, "size": args.size, "strength": args.strength, "blur": args.blur,
                     "workers": workers, "torch_threads": threads, "data": source, "stats_images": n_stats,
                     "timing": "median (and min) seconds per batch of two views over reps, each timed alone; "
                               "DataLoader rows: each batch timed alone after every worker delivered one, "
                               "ratios use their mean_s (steady rate)"},
        "kernels_per_view": launches,
        "contenders": labels,
        "results": rows,
        "ratios": ratios,
        "statistics_vs_torchvision": stats,
        "train_step": step_info,
        "proposed": None,
        "targets": targets,
    }
    C.write_result("augment", dev, payload, args.out, machine_info=info)

    # ---- last, as its compile may take a while: the PROPOSED compiled augmentation (file written again)
    proposed_info = None
    if (args.proposed == "on" or (args.proposed == "auto" and gpu)) and not args.blur:
        try:
            capply = torch.compile(aug.apply, dynamic=False)
            H, W = x_dev.shape[2], x_dev.shape[3]

            def proposed():   # the package's draws (eager), then its pure apply compiled, for both views at once
                step[0] += 1
                gs = [torch.Generator(device=dev).manual_seed(step[0] * 2 + v) for v in range(2)]
                tables = [aug.draw(B, H, W, g, dev) for g in gs]
                return capply(torch.cat([x_dev, x_dev]).float() / 255.0,
                              {k: torch.cat([t[k] for t in tables]) for k in tables[0]})

            t0 = time.perf_counter()
            proposed()
            C.sync(dev)
            compile_s = time.perf_counter() - t0
            g1, g2 = (torch.Generator(device=dev).manual_seed(123) for _ in range(2))
            diff = (capply(torch.cat([x_dev, x_dev]).float() / 255.0, {k: torch.cat([v, v]) for k, v in
                                                                         aug.draw(B, H, W, g1, dev).items()})[:B]
                    - aug(x_dev, generator=g2)).abs().max().item()
            labels["proposed_compiled"] = "PROPOSED: SimCLRAugment.draw eager + torch.compile(SimCLRAugment.apply)"
            rows["proposed_compiled"] = C.timeit(proposed, dev, reps=reps, warmup=2)
            proposed_info = {"compile_s": round(compile_s, 1), "max_abs_diff_vs_package": diff}
            print(f"  (proposed: compiled in {compile_s:.1f} s; max |difference| from SimCLRAugment's views with the "
                  f"same generator: {diff:.2e})", flush=True)
        except Exception as e:  # noqa: BLE001 (compile unavailable: no compiler, old torch): skip the row
            print(f"  [proposed compiled augmentation skipped: {type(e).__name__}: {e}]")
    if proposed_info is not None:
        t_p = rows["proposed_compiled"]["median_s"]
        payload["ratios"]["proposed_compiled_over_simclr_lite"] = round(t_p / t["simclr_lite"], 3)
        print(f"  {labels['proposed_compiled']:66s} {C.fmt_s(t_p):>10s}/batch  {2 * B / t_p:10.0f} views/s "
              f"({t['simclr_lite'] / t_p:.1f}x faster than SimCLRAugment)")
        if step_info is not None:
            step_info["proposed_augment_fraction_of_step"] = round(
                t_p / (t_p + step_info["model_step_s"]["median_s"]), 4)
            print(f"  PROPOSED compiled augmentation: {step_info['proposed_augment_fraction_of_step']:.1%} of a step")
        payload["proposed"] = proposed_info
        C.write_result("augment", dev, payload, args.out, machine_info=info)


if __name__ == "__main__":
    main()
