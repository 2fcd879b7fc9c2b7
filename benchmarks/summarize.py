"""Print the figures and targets of benchmark results JSON files as a Markdown table.

    python benchmarks/summarize.py                     # benchmarks/results/*.json
    python benchmarks/summarize.py "$OUT"              # a folder written by gpu_all.sh
    python benchmarks/summarize.py --targets "$OUT"    # issue 16's targets: measured, met / missed

The rows are the ones benchmarks/README.md's table holds, so a run's output
can be pasted there.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _mark(met) -> str:
    return "n/a" if met is None else ("**met**" if met else "**missed**")


def rows_for(r: dict) -> list[tuple[str, str, str, str, str]]:
    """(target, figure, ratio / value, met, device) rows of one results file."""
    dev, cmd = r["machine"]["device"], r.get("command", "")
    name, res, tg = r["benchmark"], r.get("results", {}), r.get("targets", {})
    out = []
    if name == "augment":
        s = r["settings"]
        ours = res["simclr_lite"]["median_s"]
        fig = f"two views of {s['batch']} images: SimCLRAugment {ours * 1e3:.1f} ms"
        if "simclr_lite_1thread" in res:
            fig += f" ({s.get('torch_threads')} threads), {res['simclr_lite_1thread']['median_s'] * 1e3:.1f} ms (1 thread)"
        if "proposed_compiled" in res:
            fig += f"; PROPOSED compiled {res['proposed_compiled']['median_s'] * 1e3:.2f} ms"
        for key, label in (("torchvision_workers", "torchvision per image, DataLoader"),
                           ("lightly_workers", "lightly per image, DataLoader"), ("kornia", "kornia batched"),
                           ("torchvision_1process", "torchvision per image, 1 process")):
            if key in res:
                fig += f"; {label} {res[key]['median_s'] * 1e3:.1f} ms"
        t10, tk = tg["10x_torchvision_per_image_same_cores"], tg["10x_kornia"]
        rat = (f"torchvision per image (DataLoader) / ours {t10['ratio']}x, kornia / ours {tk['ratio']}x "
               f"(ours = {t10.get('simclr_lite_setting', 'SimCLRAugment')})")
        if "per_core_torchvision_1process_over_simclr_lite_1thread" in r["ratios"]:
            rat += f"; per core {r['ratios']['per_core_torchvision_1process_over_simclr_lite_1thread']}x"
        out.append(("augment >= 10x per-image & kornia, same stats", fig, rat,
                    (f"torchvision {_mark(tg['10x_torchvision_per_image_same_cores']['met'])}, "
                    f"kornia {_mark(tg['10x_kornia']['met'])}, stats {_mark(tg['same_output_statistics']['met'])}"),
                    dev))
        if "under_10pct_of_resnet18_step_gpu" in tg:
            t = tg["under_10pct_of_resnet18_step_gpu"]
            out.append(("augment < 10% of a ResNet-18 step (GPU)",
                        f"augment {ours * 1e3:.2f} ms vs step {r['train_step']['model_step_s']['median_s'] * 1e3:.1f} ms",
                        f"{t['fraction']:.1%}", _mark(t["met"]), dev))
    elif name == "loss":
        sizes = list(res)
        ol = [res[n]["ratios"]["ours_over_lightly"] for n in sizes]
        ob = [res[n]["ratios"]["ours_over_lower_bound"] for n in sizes]
        pb = [res[n]["ratios"].get("previous_over_lower_bound", res[n]["ratios"].get("proposed_over_lower_bound"))
              for n in sizes]
        big = sizes[-1]
        t = res[big]["times"]
        fig = (f"N={big}: nt_xent {t['simclr_lite.nt_xent']['median_s'] * 1e3:.1f} ms, lightly "
               f"{t['lightly.NTXentLoss']['median_s'] * 1e3:.1f} ms, bound {t['lower_bound']['median_s'] * 1e3:.1f} ms")
        out.append((f"loss <= lightly, N={sizes[0]}..{big}", fig,
                    f"ours/lightly {min(ol):.2f}-{max(ol):.2f}x", _mark(tg["no_slower_than_lightly"]["met"]), dev))
        out.append((f"loss <= 1.5x lower bound, N={sizes[0]}..{big}", "(same run)",
                    f"ours/bound {min(ob):.2f}-{max(ob):.2f}x (previous nt_xent {min(pb):.2f}-{max(pb):.2f}x)",
                    _mark(tg["within_1.5x_of_lower_bound"]["met"]), dev))
        m = tg["memory_no_more_than_lightly"]
        out.append((f"loss memory <= lightly at N={r['settings']['memory_n']}",
                    f"ours {m['ours_mib']} MiB, lightly {m['lightly_mib']} MiB",
                    "" if not m["lightly_mib"] else f"{m['ours_mib'] / m['lightly_mib']:.2f}x", _mark(m["met"]), dev))
    elif name == "train_step":
        s = r["settings"]
        out.append((f"train step >= 1.5x lightly-style (batch {s['batch_images']})",
                    (f"simclr_lite {res['simclr_lite_images_per_s']:.0f} img/s, lightly-style "
                    f"{res['lightly_style_images_per_s']:.0f} img/s; augmentation {res['augment_fraction_of_step']:.1%} "
                    f"of a step"), f"{res['ratio']:.2f}x", _mark(tg["throughput_1.5x_lightly_style"]["met"]), dev))
        if res.get("epochs"):
            e = res["epochs"]
            fig = ", ".join(f"{k} {v['epoch_s']:.2f} s" for k, v in e.items())
            out.append(("CIFAR-10 epoch < 8 s (GPU)", fig, "", _mark(tg["epoch_under_8s_gpu"]["met"]), dev))
    elif name == "knn":
        s = r["settings"]
        other = "plain" if "plain_s" in res else "before"    # files before 2026-12-06: the previous knn_predict
        out.append((f"kNN {s['n_train']}x{s['n_test']}, d={s['dim']}, k={s['k']}: < 2 s on a CPU",
                    (f"{res['knn_accuracy_s']['median_s']:.2f} s ({other}: {res[other + '_s']['median_s']:.2f} s; "
                    f"matmul alone {res['matmul_only_s']['median_s']:.2f} s = {res['matmul_gflops']:.0f} GFLOP/s; "
                    f"top-k alone {res['topk_only_s_estimate']:.2f} s); identical scores: {res['identical_scores']}"),
                    f"{res['speedup_vs_' + other]:.2f}x vs {other}",
                    _mark(tg["under_2s_on_cpu"]["met"]) if tg["under_2s_on_cpu"]["device_is_cpu"]
                    else "(GPU: informative)", dev))
    return [row + (cmd,) for row in out]


def _latest(folder: Path, pattern: str) -> dict | None:
    files = sorted(folder.glob(pattern), key=lambda f: f.stat().st_mtime)
    return json.loads(files[-1].read_text()) if files else None


def target_rows(folder: Path) -> list[tuple[str, str, str]]:
    """(target, measured, status) for every target of issue 16, from the files gpu_all.sh writes in ``folder``.

    status: met / missed, or why there is no figure (not measured here, no GPU, to be measured).
    """
    aug, step = _latest(folder, "augment-*.json"), _latest(folder, "train_step-*.json")
    checks, book = _latest(folder, "checks.json"), _latest(folder, "book-part-*.json")
    def gpu(r: dict | None) -> bool:
        return r is not None and "gpu" in r["machine"]

    def st(met: bool) -> str:
        return "met" if met else "missed"

    rows = []
    epochs = (step or {}).get("results", {}).get("epochs") or {}
    if epochs and gpu(step):
        best = min(v["epoch_s"] for v in epochs.values())
        rows.append(("CIFAR-10 epoch <= 2.0 s (ResNet-18, batch 512, bf16, one H200)",
                     ", ".join(f"{k} {v['epoch_s']:.2f} s" for k, v in epochs.items()), st(best <= 2.0)))
    else:
        rows.append(("CIFAR-10 epoch <= 2.0 s (ResNet-18, batch 512, bf16, one H200)", "-",
                     "not measured (no epoch runs)" if gpu(step) else "to be measured (no GPU)"))
    t = (aug or {}).get("targets", {})
    if "under_10pct_of_resnet18_step_gpu" in t:
        rows.append(("augmentation < 10% of a ResNet-18 step (GPU)",
                     f"{t['under_10pct_of_resnet18_step_gpu']['fraction']:.1%}",
                     st(t["under_10pct_of_resnet18_step_gpu"]["met"])))
    else:
        rows.append(("augmentation < 10% of a ResNet-18 step (GPU)", "-", "to be measured (no GPU)"))
    k = t.get("10x_kornia", {})
    rows.append(("augmentation >= 10x kornia (batched, same device)",
                 "-" if k.get("ratio") is None else f"{k['ratio']}x",
                 "to be measured (kornia not installed)" if k.get("met") is None else st(k["met"])))
    kv = (aug or {}).get("kernels_per_view") or {}
    if "before_fused_colour_steps" in kv:
        before, now = kv["before_fused_colour_steps"]["kernels"], kv["concat_two_views_per_view"]["kernels"]
        rows.append((">= 2x fewer kernel launches per view (GPU code path)",
                     f"{before} -> {kv['one_call']['kernels']} (one call), {now} (two views, concat)",
                     st(now <= before / 2)))
    else:
        rows.append((">= 2x fewer kernel launches per view (GPU code path)", "-", "not measured"))
    same = t.get("same_output_statistics", {}).get("met")
    rows.append(("same output distribution as torchvision per image", "statistics |z| < 4" if aug else "-",
                 "not measured" if same is None else st(same)))
    for key, label in (("same_views", "same views as the pre-fusion code for a given generator (tests)"),
                       ("foreach_lars", "foreach LARS = reference LARS to 1e-6 (tests)")):
        c = (checks or {}).get(key)
        rows.append((label, "-" if c is None else f"pytest on {checks['device']}", "not run" if c is None else st(c)))
    if step and step.get("results", {}).get("epochs", {}).get("eager_nan_check_every_97"):
        e = step["results"]["epochs"]
        rows.append(("no host sync in the steady-state step (NaN check every 97 steps vs every 50)",
                     f"{e['eager']['epoch_s']:.2f} s vs {e['eager_nan_check_every_97']['epoch_s']:.2f} s per epoch",
                     "informative"))
    sync = _latest(folder, "sync-*.json")
    rows.append(("no host sync in the steady-state step (torch.cuda.set_sync_debug_mode, check_sync.py)",
                 "-" if sync is None else f"{sync['syncs_per_steady_state_step']} per step on {sync['device']}",
                 "to be measured (no GPU)" if sync is None else st(sync["met"])))
    rows.append((">= 85% kNN with --time-budget 10 on one H200", "-",
                 "to be measured: python -m simclr_lite pretrain --preset cifar10-gpu-10min --out runs/g10"))
    rows.append((">= 90% kNN with --time-budget 60 on one H200", "-", "to be measured (60 minutes)"))
    if book:
        rows.append(("the book's full-scale runner on this device (python -m simclr_book.fullscale)",
                     f"{book['part']} at {book['budget']}: {book['wall_time_s']:.0f} s on {book['device']}",
                     "check only (the parts at gpu: book/reproduce.md)"))
    else:
        rows.append(("the book's full-scale runner on this device (python -m simclr_book.fullscale)", "-",
                     "to be measured"))
    return rows


def main() -> None:
    args = sys.argv[1:]
    targets = "--targets" in args
    args = [a for a in args if a != "--targets"]
    folder = Path(args[0]) if args else Path(__file__).resolve().parent / "results"
    if targets:
        print("| issue 16 target | measured | status |")
        print("|---|---|---|")
        for row in target_rows(folder):
            print("| " + " | ".join(c.replace("|", "/") for c in row) + " |")
        return
    files = sorted(folder.glob("*.json"))
    if not files:
        print(f"no results in {folder}")
        return
    print("| target | figures | ratio | status | device | command |")
    print("|---|---|---|---|---|---|")
    for f in files:
        try:
            r = json.loads(f.read_text())
            if "benchmark" not in r:  # e.g. cifar10-cpu-quality.json: a quality result, not a benchmark
                continue
            for row in rows_for(r):
                print("| " + " | ".join(str(c).replace("|", "/") for c in row[:5]) + f" | `{row[5]}` |")
        except (KeyError, ValueError, TypeError) as e:
            print(f"| {f.name} | unreadable ({type(e).__name__}: {e}) | | | | |")


if __name__ == "__main__":
    main()
