"""Print the figures and targets of benchmark results JSON files as a Markdown table.

    python benchmarks/summarize.py                     # benchmarks/results/*.json
    python benchmarks/summarize.py "$OUT"              # a folder written by gpu_all.sh

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
        out.append((f"kNN {s['n_train']}x{s['n_test']}, d={s['dim']}, k={s['k']}: < 2 s on a CPU",
                    (f"{res['knn_accuracy_s']['median_s']:.2f} s (before: {res['before_s']['median_s']:.2f} s; "
                    f"matmul alone {res['matmul_only_s']['median_s']:.2f} s = {res['matmul_gflops']:.0f} GFLOP/s; "
                    f"top-k alone {res['topk_only_s_estimate']:.2f} s); identical scores: {res['identical_scores']}"),
                    f"{res['speedup_vs_before']:.2f}x vs before",
                    _mark(tg["under_2s_on_cpu"]["met"]) if tg["under_2s_on_cpu"]["device_is_cpu"]
                    else "(GPU: informative)", dev))
    return [row + (cmd,) for row in out]


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results"
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
