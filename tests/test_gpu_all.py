"""benchmarks/gpu_all.sh: its GPU steps fit the 9 minutes its header promises (issue 16)."""
from __future__ import annotations

import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_all.sh"


def gpu_limits() -> dict[str, int]:
    """Each `run NAME LIMIT ...` step's limit on a GPU (`$(L N)` is N there), the quick-only steps left out."""
    limits = {}
    for line in SCRIPT.read_text().splitlines():
        m = re.match(r'\s*run (\w+)\s+"?(?:\$\(L )?(\d+)\)?"?\s', line)
        if m and "--quick" not in line:
            limits[m.group(1)] = int(m.group(2))
    return limits


def test_gpu_steps_add_up_to_what_the_header_says_and_fit_nine_minutes():
    limits = gpu_limits()
    assert {"decode", "same_views", "foreach_lars", "augment", "knn", "loss", "train_step", "sync_check",
            "book_part"} <= set(limits)
    header = re.search(r"the limits add up to (\d+) s", SCRIPT.read_text())
    assert header and int(header.group(1)) == sum(limits.values()), limits
    wheels = int(re.search(r"plus (\d+) s\s*\n?#?\s*for the wheels", SCRIPT.read_text()).group(1))
    assert sum(limits.values()) + wheels <= 540 - 30        # 30 s left for start-up of the 9 minutes
