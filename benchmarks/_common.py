"""Shared helpers of the benchmarks: device and machine description, timing, data, results files.

Not a benchmark itself. Every ``bench_*.py`` imports it (``benchmarks/`` is the
script's own folder, so ``import _common`` works when a script is run as
``python benchmarks/bench_x.py`` from anywhere).
"""
from __future__ import annotations

import datetime as _dt
import importlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch

#: BENCH_QUICK=1: tiny settings, to check that a script runs end to end (figures meaningless).
QUICK = os.environ.get("BENCH_QUICK", "0") not in ("", "0")


# ----------------------------------------------------------------------------- device & machine
def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_cores() -> int:
    """Logical cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def is_vm() -> bool:
    try:
        return " hypervisor" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def epoch_lines(run: Path) -> list[dict[str, Any]]:
    """The per-epoch lines of a pretraining run's metrics.jsonl."""
    rows = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "epoch"]


def training_seconds(run: Path) -> float:
    """Wall time a pretraining run spent training: the last epoch line's ``time_s`` (taken before the
    final kNN evaluation)."""
    return max(r["time_s"] for r in epoch_lines(run))


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _slug(text: str) -> str:
    text = re.sub(r"\(R\)|\(TM\)|\bCPU\b|@.*$|\bProcessor\b", " ", text, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def device_slug(device: torch.device) -> str:
    """``cpu-amd-epyc-2c`` or ``cuda-nvidia-h100-80gb-hbm3``: the suffix of a results file."""
    if device.type == "cuda":
        return "cuda-" + _slug(torch.cuda.get_device_name(device))
    return f"cpu-{_slug(cpu_model())}-{cpu_cores()}c"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    vm = ", VM" if is_vm() else ""
    return f"{cpu_model()} ({cpu_cores()} cores{vm}, {torch.get_num_threads()} torch threads)"


def _version(module: str) -> str | None:
    try:
        return importlib.import_module(module).__version__
    except Exception:  # noqa: BLE001 (not installed, or fails to import without its optional deps)
        return None


#: Folders of results that the scripts write into the checkout: changes there do not make a tree "dirty"
#: (one benchmark's or one chapter's JSON file must not mark the next run as edited).
RESULTS_FOLDERS = ("benchmarks/results", "book/results")


def git_commit() -> str | None:
    """The checkout's commit when this module was first imported (``+dirty`` if the tree had changes then),
    so that edits made while a long benchmark runs do not relabel its results. The rule:
    :func:`git_commit_now`."""
    return _COMMIT_AT_START


def git_commit_now(repo: Path | str | None = None) -> str | None:
    """The one rule for the commit a result records (benchmarks and ``simclr_book.fullscale``).

    ``$SIMCLR_COMMIT`` when set (the sender of a working tree to a GPU machine sets it: the copy's
    ``.git`` may be absent or stale there); else the short commit of ``repo`` (default: this checkout),
    with ``+dirty`` when a tracked file differs from it, changes under :data:`RESULTS_FOLDERS` and
    untracked files not counted; ``None`` without git or outside a repository.
    """
    if os.environ.get("SIMCLR_COMMIT"):
        return os.environ["SIMCLR_COMMIT"]
    repo = Path(repo) if repo is not None else REPO
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=10, check=False).stdout.strip()
        if not rev:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                *(f":(exclude){f}" for f in RESULTS_FOLDERS)], cwd=repo,
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _git_commit_now() -> str | None:
    """:func:`git_commit_now` of this checkout (``REPO``, which tests may point elsewhere)."""
    return git_commit_now(REPO)


_COMMIT_AT_START = _git_commit_now()


def machine(device: torch.device) -> dict[str, Any]:
    """What a result was measured on: device, CPU, cores, load, GPU, versions."""
    info: dict[str, Any] = {
        "device": device_name(device),
        "device_slug": device_slug(device),
        "cpu": cpu_model(),
        "cpu_cores": cpu_cores(),
        "virtual_machine": is_vm(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min_at_start": load_average(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1),
                    gpu_sm_count=p.multi_processor_count, cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    info["versions"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "numpy": _version("numpy"),
        "pillow": _version("PIL"),
        "lightly": _version("lightly"),
        "kornia": _version("kornia"),
        "simclr_lite_commit": git_commit(),
    }
    return info


def warn_if_busy(device: torch.device, limit: float = 1.5) -> None:
    load = load_average()
    if device.type == "cpu" and load is not None and load > limit:
        print(f"[warning] 1-min load average {load} > {limit}: other processes share these "
              f"{cpu_cores()} cores, CPU timings will be pessimistic", flush=True)


# ----------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_stats(times: list[float]) -> dict[str, Any]:
    """Median, min and max of timed calls (NaN when there are none), their number, and the times themselves."""
    s = sorted(times) or [float("nan")]
    return {"median_s": s[len(s) // 2], "min_s": s[0], "max_s": s[-1], "reps": len(times),
            "times_s": [round(t, 6) for t in times]}


def timeit(fn: Callable[[], Any], device: torch.device, reps: int, warmup: int = 1,
           max_seconds: float | None = None) -> dict[str, Any]:
    """Seconds per call of ``fn``: median, min and all of ``reps`` timed calls after ``warmup``.

    Each call is timed alone (synchronising the GPU before and after); with
    ``max_seconds`` the timing stops early once that much time was spent (at
    least one timed call is kept).
    """
    for _ in range(warmup):
        fn()
    sync(device)
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    return time_stats(times)


def timeit_many(fns: dict[str, Callable[[], Any]], device: torch.device, reps: int, warmup: int = 1,
                max_seconds: float | None = None) -> dict[str, dict[str, Any]]:
    """:func:`timeit` for several contenders, interleaved: rep r times every contender once, in turn,
    so that load from other processes on shared cores falls on all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t0)
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    return {k: time_stats(ts) for k, ts in times.items()}


# ----------------------------------------------------------------------------- data
def cifar10(train: bool = True, allow_random: bool = True) -> tuple[torch.Tensor, torch.Tensor, str]:
    """CIFAR-10 as uint8 (N, 3, 32, 32) + labels, and a description of where it came from.

    Order: ``$SIMCLR_DATA`` (``simclr_lite.data.load_dataset``); else a decoded
    cache ``data/cache/*_tar_gz-<split>-32-*.npz`` in this checkout; else random
    uint8 images of CIFAR-10's shape (timings are the same, the statistics of
    the augmented images are not those of photographs).
    """
    split = "train" if train else "test"
    n = 50_000 if train else 10_000
    if os.environ.get("SIMCLR_DATA"):
        from simclr_lite.data import load_dataset
        try:
            x, y, _ = load_dataset(None, train, size=32)
            return x, y, f"CIFAR-10 {split} from $SIMCLR_DATA={os.environ['SIMCLR_DATA']}"
        except Exception as e:  # noqa: BLE001 (a wrong path must not cost the whole GPU run: fall back, say so)
            print(f"[warning] CIFAR-10 from $SIMCLR_DATA failed ({type(e).__name__}: {e}); falling back",
                  flush=True)
    for cache in sorted((REPO / "data" / "cache").glob(f"*-{split}-32-*.npz")):
        try:
            import numpy as np
            with np.load(cache, allow_pickle=False) as z:
                x, y = torch.from_numpy(z["images"]), torch.from_numpy(z["labels"])
            if x.shape[1:] == (3, 32, 32) and len(x) == n:
                return x, y, f"CIFAR-10 {split} (decoded cache {cache.relative_to(REPO)})"
        except (OSError, ValueError, KeyError):
            continue
    if not allow_random:
        raise RuntimeError("no CIFAR-10 found: set SIMCLR_DATA")
    g = torch.Generator().manual_seed(0 if train else 1)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y, f"random uint8 images of CIFAR-10 shape ({n}, 3, 32, 32) (SIMCLR_DATA not set)"


# ----------------------------------------------------------------------------- results
def results_dir(out: str | None = None) -> Path:
    """``--out``, else ``$OUT`` (set by the GPU runner), else ``benchmarks/results``."""
    d = Path(out or os.environ.get("OUT") or REPO / "benchmarks" / "results")
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_result(name: str, device: torch.device, payload: dict[str, Any], out: str | None = None,
                 command: str | None = None, machine_info: dict[str, Any] | None = None) -> Path:
    """Write ``<out>/<name>-<device-slug>.json`` (with machine, versions, time, command) and return its path.

    Pass ``machine_info = machine(device)`` taken when the script started (its load average then).
    """
    record = public_paths({
        "benchmark": name,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command or _command_line(),
        "quick": QUICK,
        "machine": machine_info or machine(device),
        **payload,
    })
    path = results_dir(out) / f"{name}-{device_slug(device)}{'-quick' if QUICK else ''}.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {path}", flush=True)
    return path


def _command_line() -> str:
    """The command that ran this script, as a results file records it: repo-relative, no machine paths."""
    script = Path(sys.argv[0]).resolve()
    shown = str(script.relative_to(REPO)) if script.is_relative_to(REPO) else sys.argv[0]
    env = " ".join(f"{k}={os.environ[k]}" for k in ("BENCH_QUICK", "SIMCLR_DATA", "PYTHONPATH") if os.environ.get(k))
    return public_paths((env + " " if env else "") + " ".join(["python", shown] + sys.argv[1:]))


#: An absolute path in a string: ``/a/b...`` or ``~/a...`` at the start, after a space, ``=``, ``:``, ``,``, a
#: quote or a bracket (so ``img/s`` or a URL's ``//host/x`` are not paths). ``/dev``, ``/proc``, ``/sys`` and
#: ``/usr`` paths name no folder of the machine's user and are kept.
_ABS_PATH = re.compile(r"""(?:^|(?<=[\s=:,'"(\[{]))(~?/(?:[\w.+@%-]+/?)+)""")
_SYSTEM = ("/dev/", "/proc/", "/sys/", "/usr/")


def _public_path(path: str) -> str:
    if path.startswith(_SYSTEM):
        return path
    if not path.startswith("~"):
        for root in {str(REPO), os.path.realpath(REPO)}:
            if path == root or path == root + "/":
                return "."
            if path.startswith(root + "/"):
                return path[len(root) + 1:]
    return "PATH"


def public_paths(obj: Any) -> Any:
    """``obj`` (a string, or dicts and lists of them) with every absolute path of this machine replaced:
    one inside this checkout by its repo-relative form (``.`` for the root), any other by ``PATH``.

    What a results file records must not hold the folders of the machine it was made on (dataset copies,
    scratch, work trees): ``SIMCLR_DATA=<a dataset copy> --run <a scratch folder>`` is recorded as
    ``SIMCLR_DATA=PATH --run PATH`` (tests/test_bench_common.py has examples)."""
    if isinstance(obj, str):
        return _ABS_PATH.sub(lambda m: _public_path(m.group(1)), obj)
    if isinstance(obj, dict):
        return {k: public_paths(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [public_paths(v) for v in obj]
    return obj


def fmt_s(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"
