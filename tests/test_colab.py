"""The chapters' Colab install cell: a pinned release whose checkout brings the results files.

Each chapter's install cell (cell 2) clones the repository at the release tag ``v<version>`` (pyproject's
``[project] version``), not a moving branch, and installs it editable, so ``book/results/gpu/`` (the
full-scale results the chapters read through ``simclr_book.budget.GPU_RESULTS``) comes with it. Outside
Colab the cell does nothing.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("0[1-7]_*.ipynb"))
INSTALL_CELL = 2


def project_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        m = re.search(r'(?ms)^\[project\]\s*$.*?^version\s*=\s*"([^"]+)"', text)
        assert m, "pyproject.toml has no [project] version"
        return m.group(1)
    return tomllib.loads(text)["project"]["version"]


def pyproject_packages() -> list[str]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:
        m = re.search(r"(?m)^packages\s*=\s*\[([^\]]*)\]", text)
        assert m, "pyproject.toml lists no packages"
        return re.findall(r'"([^"]+)"', m.group(1))
    return tomllib.loads(text)["tool"]["setuptools"]["packages"]


def install_source(nb: Path) -> str:
    cell = json.loads(nb.read_text(encoding="utf-8"))["cells"][INSTALL_CELL]
    assert cell["cell_type"] == "code", f"{nb.name}: cell {INSTALL_CELL} is not code"
    return "".join(cell["source"])


def without_magics(source: str, hook: str = "None") -> str:
    """``source`` as plain Python: each ``%magic`` / ``!shell`` line becomes ``hook(line)`` at its indentation."""
    out = []
    for line in source.splitlines():
        body = line.lstrip()
        if body.startswith(("%", "!")):
            line = f"{line[: len(line) - len(body)]}{hook}({body!r})"
        out.append(line)
    return "\n".join(out) + "\n"


def run_cell(source: str, calls: list[str]) -> dict:
    ns: dict = {"__name__": "__colab_cell__", "_magic": calls.append}
    exec(compile(without_magics(source, "_magic"), "<install cell>", "exec"), ns)
    return ns


def test_there_are_seven_chapters():
    assert len(CHAPTERS) == 7, [p.name for p in CHAPTERS]


def test_every_install_cell_is_the_same_and_pins_the_release_tag():
    version = project_version()
    sources = {nb.name: install_source(nb) for nb in CHAPTERS}
    first = sources[CHAPTERS[0].name]
    for name, src in sources.items():
        assert src == first, f"{name}: its install cell differs from {CHAPTERS[0].name}'s"
    assert first.startswith("# On Colab, install the package first"), first
    assert "google.colab" in first and "pip install" in first, first
    assert f'"--branch", "v{version}"' in first, f"the install cell does not clone tag v{version}:\n{first}"
    tags = set(re.findall(r"\bv\d+(?:\.\d+)+\b", first))
    assert tags == {f"v{version}"}, f"the install cell names {sorted(tags)}, pyproject's version is {version}"
    assert "--depth" in first and "-e /content/simclr-book" in first, first
    assert not re.search(r"\b(main|master|HEAD)\b", first), f"the install cell names a moving branch:\n{first}"
    for url in re.findall(r"git\+https://[^\s\"']+", first):
        assert f"@v{version}" in url, f"unpinned pip URL {url}"


def test_the_release_checkout_holds_the_results_files():
    budget = pytest.importorskip("simclr_book.budget")
    results = Path(budget.GPU_RESULTS).resolve()
    assert (ROOT / "pyproject.toml").is_file()
    assert results == (ROOT / "book" / "results" / "gpu").resolve(), \
        f"GPU_RESULTS is {results}, not book/results/gpu of the repository {ROOT}"
    assert set(pyproject_packages()) >= {"simclr_lite", "simclr_book"}, pyproject_packages()
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "book/results/gpu"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    assert "book/results/gpu/README.md" in tracked, "book/results/gpu is not tracked: its results would not ship"
    assert all(p.endswith((".json", "README.md")) for p in tracked), tracked


def test_the_install_cell_does_nothing_outside_colab(monkeypatch):
    src = install_source(CHAPTERS[0])
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail(f"ran {a} outside Colab"))
    path = list(sys.path)
    calls: list[str] = []
    run_cell(src, calls)
    assert calls == [], f"magics ran outside Colab: {calls}"
    assert sys.path == path, "the install cell changed sys.path outside Colab"


def test_on_colab_the_cell_clones_the_tag_installs_it_editable_and_imports_it(monkeypatch):
    version = project_version()
    src = install_source(CHAPTERS[0])
    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(sys, "path", list(sys.path))  # restored afterwards
    ran: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, *a, **k: ran.append(list(cmd)))
    import os.path
    isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: False if p == "/content/simclr-book" else isdir(p))
    calls: list[str] = []
    run_cell(src, calls)
    assert len(ran) == 1, ran
    clone = ran[0]
    assert clone[:2] == ["git", "clone"] and clone[clone.index("--branch") + 1] == f"v{version}", clone
    assert clone[-1] == "/content/simclr-book", clone
    assert calls == ["%pip install -q -e /content/simclr-book"], calls
    assert sys.path[0] == "/content/simclr-book", sys.path[:3]
