"""The plan: what each part of the book trains at a budget, whether it is cached, and its estimated minutes.

    python -m simclr_book.plan                          # the gpu budget on one H100 (the slower card)
    python -m simclr_book.plan --budget cpu             # what a reader's 2 CPU cores run
    python -m simclr_book.plan --device "NVIDIA H200" --cached   # also say which arms the run cache holds

Estimates come from measured epoch times (:data:`DEVICES`, each with its source) scaled by each arm's
size (:func:`arm_minutes`); a part run with :mod:`simclr_book.fullscale` records its measured wall time
beside the estimate, and the plan prints it where a results file exists. The caps (:data:`PART_CAP_MIN`,
:data:`BOOK_CAP_MIN`) are the issue's promise for the ``gpu`` budget; tests hold the estimates to them.

Book: the Reproducing page; every chapter prints its part of the plan before it trains.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

from simclr_book.budget import Budget, arm_config, budget_sizes, shared_config
from simclr_book.specs import PARTS, Arm, Part, part_epochs

PART_CAP_MIN = 9.0     # every part at gpu, from an empty cache, on one H100 or H200
BOOK_CAP_MIN = 90.0    # every part at gpu, one after another


@dataclass(frozen=True)
class Device:
    """Measured speed of one device at one budget: seconds per SimCLR epoch of the budget's arm recipe on
    all 50,000 CIFAR-10 images (2,048 at smoke) while ``workers`` arms train side by side
    (:func:`simclr_book.fullscale.train_missing`), and the fixed costs of a part and of an arm's evaluation."""
    name: str
    budget: str
    epoch_s: float
    start_s: float       # imports, data, device start-up, floors (raw pixels, random encoder)
    eval_s: float        # kNN and linear evaluation of one arm
    source: str
    workers: int = 1     # arms trained at once (a part's arms; a shared model trains alone)


DEVICES: dict[str, Device] = {d.name: d for d in (
    Device("NVIDIA H200", "gpu", 3.6, 30, 15,
           "measured: 41.9 epochs of ResNet-18 (the cifar10-gpu preset: batch 512, bf16, eager) in 151.4 s, "
           "benchmarks/results/h200-2026-11-30/cifar10-gpu-2.5min-eager.run.json"),
    Device("NVIDIA H100", "gpu", 4.5, 30, 20,
           "not measured: the H200's times x 1.25 (assumed; the H100's memory is slower)"),
    Device("2 CPU cores", "cpu", 60.0, 150, 25,
           "measured on 2 idle cores of an AMD EPYC: benchmarks/bench_parallel_arms.py, two arms at once at one "
           "thread each, 58-68 s per epoch each (alone at one thread 57-65 s; chapter 5's arms 46-64 s); an "
           "arm's kNN and linear evaluation about 25 s at one thread (chapter 3's grid: 19-27 s per arm)",
           workers=2),
    Device("2 CPU cores (smoke)", "smoke", 0.5, 10, 2, "measured: CI's smoke arms, about 0.5 s per epoch"),
)}
DEFAULT_DEVICE = {"gpu": "NVIDIA H100", "cpu": "2 CPU cores", "smoke": "2 CPU cores (smoke)"}

# relative forward-backward cost of the encoders (ResNet-18 = 1; FLOPs of the CIFAR variants)
_DEPTH = {"resnet10": 0.55, "resnet18": 1.0, "resnet34": 2.0, "resnet50": 2.3}
SUPERVISED = 0.5       # a supervised epoch: one view, no head, against SimCLR's two views
TSNE_S = {"gpu": 60, "cpu": 120, "smoke": 5}
FINETUNE_STEPS = 2 * (200 + 60 * (5000 // 256))   # Table 7: 1% (200 steps) and 10% (60 epochs), SimCLR + scratch


def arm_config_at(part: Part, arm: Arm, budget: Budget, seed: int):
    """The :class:`~simclr_lite.config.Config` of ``arm`` of ``part`` at ``budget`` and ``seed``."""
    if arm.kind == "shared":
        from dataclasses import replace
        return replace(shared_config(budget, arm.shared), seed=seed)
    fields = arm.fields(budget.name)
    epochs = part_epochs(part, arm, budget.name) or budget.arm_epochs
    return arm_config(budget, **{**fields, "epochs": epochs, "seed": seed})


def arm_minutes(part: Part, arm: Arm, budget: Budget, device: Device) -> float:
    """Estimated minutes to train and evaluate ``arm`` once: epochs x the device's epoch time, scaled by
    width (squared, with a floor: small models do not fill a device), depth, batch and kind."""
    cfg = arm_config_at(part, arm, budget, 0)
    base = budget.config()
    width = max((cfg.width / base.width) ** 2, 0.3 if budget.name == "gpu" else 0.15)
    depth = _DEPTH.get(cfg.arch, 1.0) / _DEPTH.get(base.arch, 1.0)
    batch = max(0.85, 1 + 0.15 * (base.batch_size / cfg.batch_size - 1)) if budget.name == "gpu" else 1.0
    supervised = arm.kind == "supervised"     # one view, no head; scored by its own test pass
    seconds = (cfg.epochs * device.epoch_s * width * depth * batch * (SUPERVISED if supervised else 1.0)
               + (0 if supervised else device.eval_s))
    return seconds / 60


def part_minutes(part: Part, budget: Budget, device: Device) -> float:
    """Estimated minutes of ``part`` from an empty cache: start-up, every arm at every seed (``device.workers``
    at once; a shared model alone), its extras."""
    seeds = part.seeds.get(budget.name, (0,))
    s = device.start_s + 60 * sum(arm_minutes(part, a, budget, device) / (1 if a.kind == "shared" else device.workers)
                                  for a in part.arms) * len(seeds)
    if "tsne" in part.evals:
        s += TSNE_S[budget.name]
    if "finetune" in part.evals:
        steps_per_epoch = max(1, budget.model_train_images // budget.config().batch_size)
        s += FINETUNE_STEPS * device.epoch_s / steps_per_epoch * SUPERVISED
    if "h_and_z" in part.evals:                 # a second evaluation, on z, for the arms with a head
        s += device.eval_s * sum(a.shared != "no-head" for a in part.arms) * len(seeds)
    return s / 60


def ordered_parts() -> list[Part]:
    """Parts in the order the book's GPU time is spent (the issue's list), then the rest."""
    return sorted(PARTS.values(), key=lambda p: (p.gpu_order or 99, p.chapter, p.name))


def run_folders(part: Part, arm: Arm, budget: Budget, seed: int, data: Any) -> list[Any]:
    """The run cache's folders of SimCLR arm (or shared model) ``arm`` at ``seed``: every finished run with
    its key, whatever name it was stored under."""
    from simclr_book import cache
    from simclr_book.fullscale import fig5_views
    return cache.run_folders(arm_config_at(part, arm, budget, seed), data,
                             fig5_views(*arm.views)[1] if arm.views else None)


def is_cached(part: Part, arm: Arm, budget: Budget, seed: int, data: Any) -> bool:
    """Whether the run cache holds ``arm`` at ``seed`` (simclr arms and shared models; a supervised arm's
    result is cached under the results folder)."""
    if arm.kind == "supervised":
        from simclr_book import cache
        from simclr_book.fullscale import supervised_parts
        cfg = arm_config_at(part, arm, budget, seed)
        return cache.stored_result(supervised_parts(cfg, data)) is not None
    return bool(run_folders(part, arm, budget, seed, data))


def plan(budget: Budget, device: Device, data: Any = None, chapter: int | None = None) -> list[dict[str, Any]]:
    """One record per part (of ``chapter`` only, when given): name, chapter, title, arms (name, seeds,
    epochs, cached), estimated minutes from an empty cache, and the measured minutes of its results file
    when one exists."""
    from simclr_book.fullscale import read_results
    out = []
    for part in ordered_parts():
        if chapter is not None and part.chapter != chapter:
            continue
        seeds = part.seeds.get(budget.name, (0,))
        arms = []
        for a in part.arms:
            cfg = arm_config_at(part, a, budget, seeds[0])
            cached = None if data is None else sum(is_cached(part, a, budget, s, data) for s in seeds)
            arms.append(dict(name=a.name, kind=a.kind, shared=a.shared, epochs=cfg.epochs, batch=cfg.batch_size, seeds=list(seeds),
                             cached=cached, minutes=round(arm_minutes(part, a, budget, device) * len(seeds), 2)))
        res = read_results(part.name) if budget.name == "gpu" else None
        out.append(dict(part=part.name, chapter=part.chapter, title=part.title, arms=arms,
                        minutes=round(part_minutes(part, budget, device), 2),
                        measured_minutes=None if res is None else round(res["wall_time_s"] / 60, 2),
                        measured_on=None if res is None else res["device"]))
    return out


def show(records: list[dict[str, Any]], budget: Budget, device: Device) -> str:
    """The plan as text: one block per part, then the total."""
    lines = [f"plan at the {budget.name} budget on {device.name} ({device.source})"]
    for r in records:
        measured = (f"; measured {r['measured_minutes']:.1f} min on {r['measured_on']}"
                    if r["measured_minutes"] is not None else "")
        lines.append(f"\n{r['part']} (chapter {r['chapter']}): {r['title']}\n"
                     f"  estimated {r['minutes']:.1f} min from an empty cache{measured}")
        for a in r["arms"]:
            cached = "" if a["cached"] is None else f", cached {a['cached']} of {len(a['seeds'])}"
            lines.append(f"  - {a['name']} ({a['kind']}): {a['epochs']} epochs at batch {a['batch']}, "
                         f"seeds {', '.join(map(str, a['seeds']))}{cached}: {a['minutes']:.1f} min")
    total = sum(r["minutes"] for r in records)
    lines.append(f"\nall {len(records)} parts: {total:.0f} min estimated"
                 + (f" (cap {BOOK_CAP_MIN:.0f} min; each part at most {PART_CAP_MIN:.0f})" if budget.name == "gpu"
                    else ""))
    return "\n".join(lines)


def this_device(budget: Budget) -> Device:
    """The :data:`DEVICES` entry for this machine at ``budget``: the visible GPU where its speed is measured
    (an unknown GPU is estimated as the H100), else the budget's default."""
    if budget.name == "gpu":
        import torch
        name = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
        return next((d for d in DEVICES.values() if d.budget == "gpu" and d.name in name),
                    DEVICES[DEFAULT_DEVICE["gpu"]])
    return DEVICES[DEFAULT_DEVICE[budget.name]]


def chapter_plan(chapter: int, budget: Budget, data: Any = None, device: Device | None = None) -> str:
    """What ``chapter``'s parts train at ``budget``, which arms the run cache holds (when ``data`` is given)
    and the estimated minutes on this machine (:func:`this_device`): each chapter prints it before it
    trains. An arm's minutes count only its seeds not cached yet (one arm's; the total divides a part's arms
    by ``device.workers``, the arms trained at once)."""
    device = device or this_device(budget)
    records = plan(budget, device, data, chapter=chapter)     # the cache is checked for this chapter only
    if not records:
        return f"chapter {chapter} has no part of the book's specs at the {budget.name} budget"
    lines = [f"chapter {chapter} at the {budget.name} budget on {device.name} (estimates: {device.source})"]
    todo, seen = 0.0, set()     # a shared model (e.g. ``main``) is trained once for every part that uses it
    for r in records:
        per_arm = []
        for a in r["arms"]:
            left = len(a["seeds"]) - (a["cached"] or 0)
            dup = a["kind"] == "shared" and (a["shared"], tuple(a["seeds"])) in seen
            left = 0 if dup else left
            if a["kind"] == "shared":
                seen.add((a["shared"], tuple(a["seeds"])))
            per_arm.append((a, a["minutes"] / len(a["seeds"]) * left, dup))
        todo += sum(m / (1 if a["kind"] == "shared" else device.workers) for a, m, _ in per_arm)
        lines.append(f"- {r['part']}: {r['title']}")
        for a, m, dup in per_arm:
            cached = "" if a["cached"] is None else f"; cached {a['cached']} of {len(a['seeds'])}"
            cost = "the shared model above" if dup else f"about {m:.1f} min to train"
            lines.append(f"    {a['name']}: {a['epochs']} epochs at batch {a['batch']}, seeds "
                         f"{', '.join(map(str, a['seeds']))}{cached}; {cost}")
    side = f", {device.workers} arms at a time" if device.workers > 1 else ""
    lines.append(f"about {todo:.0f} min of training left{side}" + ("" if data is not None else
                                                                   " (the run cache was not checked)"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", default="gpu", choices=["smoke", "cpu", "gpu"])
    ap.add_argument("--device", default=None, choices=sorted(DEVICES), help="whose measured speed to use")
    ap.add_argument("--cached", action="store_true", help="load the data and check the run cache for each arm")
    ap.add_argument("--json", action="store_true", help="print the records as JSON")
    args = ap.parse_args(argv)
    budget = budget_sizes(args.budget)     # sizes only: a plan is printed on any machine
    device = DEVICES[args.device or DEFAULT_DEVICE[args.budget]]
    data = None
    if args.cached:
        from simclr_book.budget import load_data
        data = load_data(budget, full=True)
    records = plan(budget, device, data)
    print(json.dumps(records, indent=1) if args.json else show(records, budget, device))


if __name__ == "__main__":
    main()
