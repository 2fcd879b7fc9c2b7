"""Chapter 7's checks and tables: many processes computing what one big device would (Sec. 2.2).

The paper trains at batch 4096 on 128 TPU v3 cores, with negatives gathered from every core and
"Global BN" (Sec. 2.2). Chapter 7 (``book/07_scaling_up.ipynb``) checks live that ``simclr_lite``
does both; this module keeps the chapter's machinery so that the notebook shows the checks, not
their plumbing:

- :func:`gather_variants` is what each ``torchrun`` process of the gather check runs
  (``python -m simclr_book.scaling_book gather INPUTS OUT``); :func:`single_process_step` is the
  reference and :func:`gather_diffs` compares them, eqs. (7.2)-(7.5) of the chapter.
- :func:`write_image_tree` writes an ImageNet-style folder of mixed image files.
- :func:`pretrain_args`, :func:`run_weights` and :func:`run_metrics` run and read the command-line
  check that 2 processes train like 1.
- :func:`precision_forward` compares float32 with autocast, :func:`forward_flops` counts FLOPs.
- :func:`read_benchmarks`, :func:`distributed_tables` and :func:`benchmark_rows` turn
  ``benchmarks/results/*.json`` into the chapter's tables (:func:`public_command` hides machine paths).
- :func:`say`, :func:`shell`, :func:`run_command`, :func:`fmt_seconds`: printing and launching.

Book: chapter 7.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

#: ``torchrun``, run with this interpreter (the same launcher as the ``torchrun`` script).
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]

#: The four kinds of files of the chapter's ImageFolder tree: ((width, height), mode, format, suffix), as an
#: ImageNet folder holds them (RGB, grayscale, RGBA and CMYK files of any size).
IMAGE_KINDS = (((32, 32), "RGB", "PNG", "png"), ((48, 40), "L", "JPEG", "jpg"),
               ((40, 40), "RGBA", "PNG", "png"), ((36, 56), "CMYK", "JPEG", "jpg"))

#: The gather check's variants: (name, global BN, gradients through the gather).
GATHER_VARIANTS = (("exact", True, True), ("detached", True, False), ("local BN", False, True))


# ------------------------------------------------------------------------------- printing, launching
def say(text: Any, width: int = 88) -> None:
    """Print ``text`` wrapped to the book's text column; continuation lines are indented."""
    for line in str(text).split("\n"):
        print(textwrap.fill(line, width, subsequent_indent="    ", break_long_words=False,
                            break_on_hyphens=False) if line.strip() else line)


def shell(cmd: str, width: int = 84) -> str:
    """A command line wrapped to the text column with shell continuations (copy-paste safe)."""
    return " \\\n".join(textwrap.wrap(cmd, width, initial_indent="  ", subsequent_indent="    ",
                                       break_long_words=False, break_on_hyphens=False))


def run_command(cmd: Sequence[str], cwd: str | os.PathLike, env: dict[str, str] | None = None,
                timeout: float = 600) -> float:
    """Run ``cmd`` in ``cwd``; fail loudly with its stderr; return its wall time in seconds. Past
    ``timeout`` it is sent SIGTERM first, which ``torchrun`` forwards to its workers (a SIGKILL would
    leave them running), then killed."""
    t0 = time.perf_counter()
    with subprocess.Popen(list(cmd), env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as p:
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.terminate()
            try:
                _, err = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
            raise RuntimeError(f"{' '.join(map(str, cmd))} timed out after {timeout:g} s:\n{err[-3000:]}") from None
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{err[-3000:]}")
    return time.perf_counter() - t0


def fmt_seconds(s: float | str) -> str:
    """``42 s`` below two minutes, ``3.5 min`` above; text is returned as it is."""
    return s if isinstance(s, str) else (f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min")


# --------------------------------------------------------------------- the gather check (7.2)-(7.5)
def _build(inp: dict[str, Any]) -> torch.nn.Module:
    from simclr_lite.models import build_simclr
    model = build_simclr(inp["arch"], inp["width"], True, "nonlinear", inp["proj_dim"], inp["stem_stride"])
    model.load_state_dict(inp["state"])
    return model


def gather_variants(inp: dict[str, Any], info: Any) -> dict[str, dict[str, Any]]:
    """One DDP step of NT-Xent on this rank's share of the global batch ``inp``
    (``x_a``, ``x_b``: N pairs of float64 views; the model's ``state`` and spec;
    ``tau``), in the 3 variants of :data:`GATHER_VARIANTS`. Rank r's anchors are
    the pairs ``r n ... (r + 1) n - 1`` (n = N / W), each contrasted with all 2N
    gathered views (eq. 7.1). Returns per variant the rank's loss, the global loss
    (mean over ranks), the gradient of its own projections and the parameter
    gradients after DDP's averaging."""
    from torch import nn

    from simclr_lite import distributed as D
    from simclr_lite.losses import nt_xent
    r, W = info.rank, info.world_size
    n = inp["x_a"].shape[0] // W                     # pairs per rank
    rows = slice(r * n, (r + 1) * n)
    results = {}
    for variant, global_bn, grad_gather in GATHER_VARIANTS:
        model = _build(inp)
        if global_bn:
            model = D.convert_global_bn(model, info.device)
        model = model.double().train()
        ddp = nn.parallel.DistributedDataParallel(model)
        _, z = ddp(torch.cat([inp["x_a"][rows], inp["x_b"][rows]]))
        z.retain_grad()
        z_a, z_b = z.chunk(2)
        z_a_all, z_b_all = D.gather(z_a), D.gather(z_b)  # (N, d), rank order
        if not grad_gather:                         # a plain all_gather
            z_a_all, z_b_all = z_a_all.detach(), z_b_all.detach()
        loss = nt_xent(z_a, z_b, inp["tau"], z_a_all=z_a_all, z_b_all=z_b_all,
                       offset=r * n)                # anchors: rank r's rows
        loss.backward()                             # DDP averages the gradients
        results[variant] = dict(
            loss=loss.detach(), global_loss=D.all_mean(loss), z_grad=z.grad,
            param_grad=torch.cat([p.grad.flatten() for p in model.parameters()]))
    return results


def _gather_main(inputs: str, out: str) -> None:
    """Entry point of each ``torchrun`` process: ``gather_variants`` on ``inputs``, saved as
    ``out/rank{r}.pt``."""
    from simclr_lite import distributed as D
    torch.set_num_threads(1)
    info = D.setup("cpu")                 # reads RANK / WORLD_SIZE from torchrun; gloo on CPUs
    res = gather_variants(torch.load(inputs, weights_only=True), info)
    torch.save(res, Path(out) / f"rank{info.rank}.pt")
    D.cleanup()


def gather_inputs(images: torch.Tensor, n_pairs: int = 8, tau: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """The gather check's global batch: ``n_pairs`` images drawn from ``images`` (uint8) with two
    augmented views each (float64, so that the comparison can be tight), a ResNet-10 at 1/8 width with a
    nonlinear 16-d head (its initial ``state``, seeded by ``seed``) and the temperature ``tau``."""
    from simclr_lite.augment import SimCLRAugment
    from simclr_lite.models import build_simclr
    g = torch.Generator().manual_seed(seed)
    imgs = images[torch.randperm(len(images), generator=g)[:n_pairs]]
    aug = SimCLRAugment(images.shape[-1], strength=0.5)
    x_a, x_b = aug(imgs, generator=g).double(), aug(imgs, generator=g).double()
    torch.manual_seed(seed)
    spec = dict(arch="resnet10", width=0.125, stem_stride=2, proj_dim=16)
    state = build_simclr(spec["arch"], spec["width"], True, "nonlinear", spec["proj_dim"],
                         spec["stem_stride"]).state_dict()
    return dict(x_a=x_a, x_b=x_b, state=state, tau=tau, **spec)


def run_gather_check(inp: dict[str, Any], world: int, work: str | os.PathLike, env: dict[str, str] | None = None
                     ) -> tuple[list[dict[str, dict[str, torch.Tensor]]], list[str], float]:
    """:func:`gather_variants` in ``world`` processes under ``torchrun`` (gloo), with ``work`` as their
    folder: every rank's results, the command (relative to ``work``) and its wall time in seconds."""
    work = Path(work)
    torch.save(inp, work / "gather_inputs.pt")
    (work / "gather_out").mkdir(exist_ok=True)
    cmd = TORCHRUN + [f"--nproc_per_node={world}", "-m", "simclr_book.scaling_book", "gather",
                      "gather_inputs.pt", "gather_out"]
    seconds = run_command(cmd, work, env)
    ranks = [torch.load(work / "gather_out" / f"rank{r}.pt", weights_only=True) for r in range(world)]
    return ranks, cmd, seconds


def single_process_step(inp: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The reference of the gather check: one process, the whole batch of ``inp``, plain batch norm.
    Returns the loss, the gradient of the 2N projections and the parameter gradient."""
    from simclr_lite.losses import nt_xent
    model = _build(inp).double().train()
    _, z = model(torch.cat([inp["x_a"], inp["x_b"]]))
    z.retain_grad()
    loss = nt_xent(*z.chunk(2), inp["tau"])
    loss.backward()
    return dict(loss=loss.detach(), z_grad=z.grad,
                param_grad=torch.cat([p.grad.flatten() for p in model.parameters()]))


def gather_diffs(ranks: Sequence[dict[str, dict[str, torch.Tensor]]], ref: dict[str, torch.Tensor]
                 ) -> dict[str, dict[str, float]]:
    """Each variant of :func:`gather_variants` on W ranks against :func:`single_process_step`:
    the mean of the rank losses (eq. 7.2 says it is the single-process loss), ``d_loss`` its distance to
    it, ``d_z`` the largest distance of a rank's projection gradient to W times the single-process one
    of the same rows (eq. 7.4) and ``d_p`` of a rank's parameter gradient to the single-process one
    (eq. 7.5)."""
    W = len(ranks)
    n_pairs = ref["z_grad"].shape[0] // 2
    n = n_pairs // W

    def rows_of(r: int) -> torch.Tensor:          # rank r's rows of [z_a; z_b]
        return torch.cat([torch.arange(r * n, (r + 1) * n), n_pairs + torch.arange(r * n, (r + 1) * n)])

    out = {}
    for variant in ranks[0]:
        loss_mean = torch.stack([res[variant]["loss"] for res in ranks]).mean()
        out[variant] = dict(
            loss=loss_mean.item(), d_loss=abs(loss_mean - ref["loss"]).item(),
            d_z=max((res[variant]["z_grad"] - W * ref["z_grad"][rows_of(r)]).abs().max().item()
                    for r, res in enumerate(ranks)),
            d_p=max((res[variant]["param_grad"] - ref["param_grad"]).abs().max().item() for res in ranks))
    return out


# ------------------------------------------------------------------------------------- ImageFolder
def write_image_tree(root: str | os.PathLike, x: torch.Tensor, y: torch.Tensor, classes: int,
                     per_class: int, split: str) -> list[Path]:
    """The first ``per_class`` images of each of the first ``classes`` classes of ``x`` (uint8, N x 3 x H
    x W) as the ImageFolder split ``root/split/n0000000c/``, cycling through :data:`IMAGE_KINDS`
    (sizes, modes and formats of an ImageNet folder). Returns the files written."""
    from PIL import Image
    written = []
    for c in range(classes):
        idx = torch.nonzero(y == c).flatten()[:per_class]
        for i, k in enumerate(idx.tolist()):
            (w, h), mode, fmt, ext = IMAGE_KINDS[i % len(IMAGE_KINDS)]
            im = Image.fromarray(np.ascontiguousarray(x[k].permute(1, 2, 0).numpy())).resize((w, h),
                                                                                              Image.BILINEAR)
            path = Path(root) / split / f"n{c:08d}" / f"{split}_{i:03d}.{ext}"   # synset-style folder names
            path.parent.mkdir(parents=True, exist_ok=True)
            (im.convert(mode) if mode != "RGB" else im).save(path, format=fmt)
            written.append(path)
    return written


def plot_image_tree(folder: str | os.PathLike, decoded: torch.Tensor, n: int = 4) -> Any:
    """Figure 7.2: the first ``n`` files of one class ``folder`` as stored (top: mode, format, size) and
    as the loader decoded them (bottom, ``decoded``: uint8 N x 3 x H x W, in the files' order)."""
    import matplotlib.pyplot as plt
    from PIL import Image
    fig, axes = plt.subplots(2, n, figsize=(2 * n, 4.6), dpi=100)
    for i, (ax_top, ax_bot) in enumerate(zip(axes[0], axes[1])):
        p = sorted(Path(folder).iterdir())[i]
        im = Image.open(p)
        ax_top.imshow(np.asarray(im.convert("RGB")))
        ax_top.set_title(f"{im.mode} {p.suffix[1:]} {im.size[0]}x{im.size[1]} px", fontsize=8)
        ax_bot.imshow(decoded[i].permute(1, 2, 0).numpy())
        ax_bot.set_title(f"decoded: RGB {decoded.shape[-1]}x{decoded.shape[-2]} px", fontsize=8)
    for ax in axes.flat:
        ax.set_xlabel("x (px)", fontsize=8)
        ax.set_ylabel("y (px)", fontsize=8)
        ax.tick_params(labelsize=8)
    fig.suptitle("One class of the mini ImageFolder tree: files as stored (top) and as decoded (bottom)",
                 fontsize=10)
    fig.tight_layout()
    return fig


#: Figure 7.3's runs and their line styles (the 1-process reference drawn thick, below the others).
LOSS_STYLES = {"1 process": dict(color="0.2", lw=3, alpha=0.4),
               "2 processes, global BN": dict(color="C0", marker="o", ms=3, lw=1),
               "2 processes, --loader stream": dict(color="C2", marker="x", ms=5, lw=0),
               "2 processes, --sync-bn off": dict(color="C3", marker="s", ms=3, lw=1, ls="--")}


def plot_step_losses(metrics: dict[str, list[dict[str, Any]]], batch: int) -> Any:
    """Figure 7.3: the loss each run of :data:`LOSS_STYLES` logged at each step (``metrics``: the runs'
    :func:`run_metrics`; the logged loss is the mean over ranks, the global batch's)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    for name, style in LOSS_STYLES.items():
        pts = [(r["step"], r["loss"]) for r in metrics[name] if r["kind"] == "step"]
        ax.plot(*zip(*pts), label=name, **style)
    ax.set_xlabel(f"training step (global batch {batch})")
    ax.set_ylabel("NT-Xent loss (global batch)")
    ax.set_title("2 processes vs 1 (float64): the logged loss of each step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


#: What ``scripts/slurm_pretrain.sh`` must do for the chapter's multi-node section to hold.
SLURM_NEEDS = ("torchrun --nnodes=", "--nproc_per_node=8", "--rdzv_backend=c10d", "--preset imagenet-r50",
               "--signal=USR1@120", "scontrol requeue", "--resume")


def commands_missing(root: str | os.PathLike, commands: Sequence[str]) -> tuple[list[str], list[str]] | None:
    """The ``commands`` that ``root/README.md`` does not hold (its continuation lines joined, spaces
    folded) and the :data:`SLURM_NEEDS` that ``root/scripts/slurm_pretrain.sh`` lacks; None when the
    repository's files are not there (the package installed without it)."""
    readme, slurm = Path(root) / "README.md", Path(root) / "scripts" / "slurm_pretrain.sh"
    if not (readme.exists() and slurm.exists()):
        return None
    flat = " ".join(readme.read_text().replace("\\\n", " ").split())
    script = slurm.read_text()
    return ([c for c in commands if " ".join(c.split()) not in flat], [s for s in SLURM_NEEDS if s not in script])


# ------------------------------------------------------------------- 2 processes against 1 (the CLI)
def pretrain_args(data: str | os.PathLike, out: str | os.PathLike, image_size: int, batch_size: int,
                  epochs: int, *extra: str) -> list[str]:
    """The chapter's ``-m simclr_lite pretrain`` flags for the 1-vs-2-process check: a ResNet-10 at 1/8
    width, a small learning rate (1.0 x B/256: rounding grows slower), LARS, no kNN, one thread."""
    return ["-m", "simclr_lite", "pretrain", "--data", str(data), "--out", str(out),
            "--image-size", str(image_size), "--arch", "resnet10", "--width", "0.125", "--stem-stride", "2",
            "--batch-size", str(batch_size), "--epochs", str(epochs), "--lr", "1.0",
            "--warmup-epochs", "0", "--temperature", "0.2", "--knn-every", "0", "--knn-k", "5",
            "--log-every", "1", "--device", "cpu", "--threads", "1", "--compile", "false", "--seed", "3",
            "--no-progress", *extra]


def run_weights(run: str | os.PathLike) -> torch.Tensor:
    """Every floating-point parameter and buffer of a run's final checkpoint, as one float64 vector."""
    from simclr_lite.checkpoint import load_checkpoint
    state = load_checkpoint(Path(run) / "checkpoint.pt")["model"]
    return torch.cat([v.flatten().double() for v in state.values() if v.dtype.is_floating_point])


def run_metrics(run: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` (one per logged step or epoch)."""
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------- precision and FLOPs
def precision_forward(model: torch.nn.Module, views: torch.Tensor, amp: torch.dtype, tau: float = 0.5
                      ) -> dict[str, dict[str, Any]]:
    """One forward pass of ``model`` (a SimCLR model) on ``views`` (2N views, [z_a; z_b]) in float32 and
    under autocast to ``amp``, after a warm-up pass each: the first convolution's output dtype, z (as
    float32), the NT-Xent loss (float32 under autocast too: the package casts z up) and the seconds."""
    from simclr_lite.losses import nt_xent
    dev = views.device
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    conv_dtype: list[torch.dtype] = []
    hook = first_conv.register_forward_hook(lambda mod, inp, out: conv_dtype.append(out.dtype))
    name = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp, str(amp))
    out = {}
    try:
        for key, dtype in (("float32", None), (f"{name} autocast", amp)):
            with torch.no_grad(), torch.autocast(dev.type, dtype=amp, enabled=dtype is not None):
                model(views)                                              # warm-up
                t0 = time.perf_counter()
                _, z = model(views)
                loss = nt_xent(*z.chunk(2), tau)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                out[key] = dict(conv_dtype=conv_dtype[-1], z=z.float(), loss=loss, s=time.perf_counter() - t0)
    finally:
        hook.remove()
    return out


def forward_flops(model: torch.nn.Module, size: int) -> int:
    """FLOPs of one forward pass of ``model`` (eval mode) on one ``size`` x ``size`` RGB image, as
    ``torch.utils.flop_counter`` counts them (a multiply-add is 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    return fc.get_total_flops()


# --------------------------------------------------------------------------------- benchmark files
def public_command(command: str) -> str:
    """A recorded command as the book shows it: every absolute path (the measuring machine's) is PATH."""
    return re.sub(r"(?<![\w./-])/[^\s:|]+(?::/[^\s:|]+)*", "PATH", command)


def read_benchmarks(res_dir: str | os.PathLike) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """The results files of ``benchmarks/`` in ``res_dir``, by benchmark: ``(file name, record)``,
    sorted by name; quick runs (``"quick": true``) are left out."""
    bench: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for p in sorted(Path(res_dir).glob("*.json")) if Path(res_dir).exists() else []:
        r = json.loads(p.read_text())
        if "benchmark" in r and not r.get("quick"):
            bench.setdefault(r["benchmark"], []).append((p.name, r))
    return bench


def distributed_tables(bench: dict[str, list[tuple[str, dict[str, Any]]]]
                       ) -> list[tuple[str, list[str], list[tuple]]]:
    """``bench_distributed.py``'s files: per file a caption (settings, machine, date, command) and the
    rows of processes, global batch, sync BN, images/s, s/step, peak RSS per rank and speed-up."""
    header = ["processes", "global batch", "sync BN", "images / s", "s / step", "peak RSS / rank (MiB)",
              "speed-up vs 1"]
    out = []
    for name, r in bench.get("distributed", []):
        rows = []
        for e in r["results"]:
            rss = max(x["peak_rss_mib"] for x in e["per_rank"]) if "peak_rss_mib" in e["per_rank"][0] else None
            key = str(e["nproc"]) + ("-sync-bn-off" if e.get("sync_bn") == "off" else "")
            sp = r["ratios"].get(key, {}).get("speedup_vs_1", 1.0 if e["nproc"] == 1 else "")
            rows.append((e["nproc"], e["global_batch"], e.get("sync_bn", ""), f"{e['images_per_s']:.0f}",
                         f"{e['step_time_s']:.3f}", f"{rss:.0f}" if rss else "", sp))
        s, m = r["settings"], r["machine"]
        caption = (f"{name}: {s['arch']} x{s['width']} ({s['image_size']} px, {s['per_proc_batch']} images per "
                   f"process, {s['threads']} thread per process), {m['device']}, load average "
                   f"{m.get('load_average_1min_at_start')}, {r['date_utc'][:10]}; command: "
                   f"{public_command(r['command'])}")
        out.append((caption, header, rows))
    return out


def benchmark_rows(bench: dict[str, list[tuple[str, dict[str, Any]]]]) -> list[tuple[str, str, str, str, str]]:
    """One row per file of the train-step, augmentation, loss and kNN benchmarks: what, measured,
    ratio (theirs / ours), device, command (:func:`public_command`)."""
    rows = []
    for _, r in bench.get("train_step", []):
        x = r["results"]
        rows.append((f"training step (ResNet-18 CIFAR stem, batch {r['settings']['batch_images']})",
                     f"simclr_lite {x['simclr_lite_images_per_s']} img/s vs lightly-style "
                     f"{x['lightly_style_images_per_s']} img/s", f"{x['ratio']}x", r["machine"]["device"],
                     public_command(r["command"])))
    for _, r in bench.get("augment", []):
        x = r["results"]
        ours, tv = x["simclr_lite"]["median_s"], x["torchvision_workers"]["median_s"]
        rows.append((f"augmentation, 2 views of {r['settings']['batch']} images",
                     f"SimCLRAugment {ours * 1e3:.0f} ms vs torchvision per image {tv * 1e3:.0f} ms "
                     f"({r['settings']['workers']} workers)", f"{tv / ours:.1f}x", r["machine"]["device"],
                     public_command(r["command"])))
    for _, r in bench.get("loss", []):
        big = list(r["results"])[-1]
        t = r["results"][big]["times"]
        ours, theirs = t["simclr_lite.nt_xent"]["median_s"], t["lightly.NTXentLoss"]["median_s"]
        rows.append((f"NT-Xent fwd+bwd, N = {big}, d = {r['settings']['dim']}",
                     f"nt_xent {ours * 1e3:.0f} ms vs lightly {theirs * 1e3:.0f} ms", f"{theirs / ours:.2f}x",
                     r["machine"]["device"], public_command(r["command"])))
    for _, r in bench.get("knn", []):
        x, s = r["results"], r["settings"]
        rows.append((f"kNN monitor, {s['n_train']:,} x {s['n_test']:,} features, d = {s['dim']}, k = {s['k']}",
                     f"{x['knn_accuracy_s']['median_s']:.1f} s", "", r["machine"]["device"],
                     public_command(r["command"])))
    return rows


def gpu_benchmark_files(bench: dict[str, list[tuple[str, dict[str, Any]]]]) -> list[str]:
    """The names of the benchmark files measured on a GPU (any device slug but a CPU's)."""
    return [n for v in bench.values() for n, r in v if "cpu" not in r["machine"].get("device_slug", "cpu")]


def scaling_rows(results: dict[str, Any]) -> tuple[list[str], list[tuple]]:
    """The table of part ``ch07-scaling``'s results file (:func:`simclr_book.fullscale.read_results`):
    per arm its batch, epochs, steps, images/s, peak GPU memory, kNN and linear top-1 and training time."""
    header = ["run", "batch", "epochs", "steps", "images / s", "peak memory (MiB)", "kNN top-1", "linear top-1",
              "training"]
    return header, [(r["arm"], r["batch_size"], r["epochs"], f"{r['steps']:,}", f"{r['images_per_s']:,.0f}",
                     r.get("peak_memory_mib") or "- (loaded from the run cache)", f"{100 * r['knn']:.1f}%",
                     f"{100 * r['linear']:.1f}%", f"{r['train_s']:.0f} s") for r in results["arms"]]


def imagenet_days(images_per_s: float, flops_per_view: float, flops_r50: float, epochs: int = 100,
                  images: int = 1_281_167) -> tuple[float, float]:
    """From a measured rate: the sustained TFLOP/s (2 views an image, forward + backward ~ 3 forwards)
    and the days that ``epochs`` ImageNet epochs of ResNet-50 (``flops_r50`` per view) would take at it."""
    tflops = images_per_s * 2 * 3 * flops_per_view / 1e12
    return tflops, epochs * images * 2 * 3 * flops_r50 / (tflops * 1e12) / 86400 if tflops > 0 else math.inf


def main(argv: list[str] | None = None) -> None:
    """``python -m simclr_book.scaling_book gather INPUTS OUT``: one process of the gather check."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "gather":
        raise SystemExit("usage: torchrun --nproc_per_node=W -m simclr_book.scaling_book gather INPUTS OUT")
    _gather_main(args[1], args[2])


if __name__ == "__main__":
    main()
