"""The rendered book: `jupyter-book build` with warnings as errors, then every page in headless Chromium.

The build never executes notebooks (``execute_notebooks: off``): it renders
the outputs stored in ``book/*.ipynb``. The browser test serves the HTML on
127.0.0.1 and fails on a page of the table of contents that is missing, a
broken image, a Python traceback in an output, or an error in the console.
Chromium (Debian's ``chromium`` + ``chromium-driver``) is installed by
``scripts/test.sh`` when missing; without it the browser test is skipped.
"""
from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(900)


def toc_files() -> list[str]:
    """Every document of _toc.yml (root first), as paths without suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    out = [toc["root"]]

    def walk(entries: list) -> None:
        for e in entries or []:
            if "file" in e:
                out.append(e["file"])
            walk(e.get("sections", []))
            for part in e.get("parts", []):
                walk(part.get("chapters", []))
    walk(toc.get("chapters", []))
    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    return out


def chapter_notebooks() -> list[Path]:
    return sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))


def test_every_chapter_is_in_the_toc_and_every_toc_file_exists():
    docs = toc_files()
    for nb in chapter_notebooks():
        assert f"book/{nb.stem}" in docs, f"{nb.name} is not listed in _toc.yml"
    for d in docs:
        assert any((ROOT / f"{d}{ext}").exists() for ext in (".md", ".ipynb")), f"_toc.yml lists missing {d}"


@pytest.mark.parametrize("nb", chapter_notebooks(), ids=lambda p: p.stem)
def test_notebook_is_stored_with_outputs_and_no_errors(nb: Path):
    """The book shows stored outputs, so every code cell must have run and none may have failed."""
    book = nbformat.read(nb, as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert code, f"{nb.name} has no code cells"
    first = code[0].source
    assert "google.colab" in first and "pip install" in first, f"{nb.name}: the first cell must install on Colab"
    for i, cell in enumerate(code[1:], 1):  # the Colab cell prints nothing outside Colab
        assert cell.get("execution_count"), f"{nb.name}: code cell {i} was never executed (store a cpu run)"
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{nb.name}: code cell {i} stored an error"
            text = out.get("text", "") if out.get("output_type") == "stream" else ""
            assert "Traceback (most recent call last)" not in text, f"{nb.name}: cell {i} printed a traceback"
    assert nb.stat().st_size < 3_000_000, f"{nb.name} is {nb.stat().st_size / 1e6:.1f} MB; lower the figures' dpi"


def _budget_line(nb: Path) -> str:
    for cell in nbformat.read(nb, as_version=4).cells:
        for out in cell.get("outputs", []):
            m = re.search(r"budget (\w+):", out.get("text", ""))
            if m:
                return m.group(1)
    return ""


@pytest.mark.parametrize("nb", chapter_notebooks(), ids=lambda p: p.stem)
def test_stored_outputs_come_from_a_cpu_or_larger_run(nb: Path):
    assert _budget_line(nb) in ("cpu", "gpu"), f"{nb.name}: stored outputs must come from the cpu or gpu budget"


def _config_model_calls(source: str) -> list[str]:
    """Every ``build_simclr(cfg.arch, ...)`` call in a cell's source, arguments included."""
    calls = []
    for m in re.finditer(r"build_simclr\(cfg\.arch", source):
        depth, j = 0, m.end() - len("cfg.arch") - 1
        for j in range(j, len(source)):
            depth += {"(": 1, ")": -1}.get(source[j], 0)
            if depth == 0:
                break
        calls.append(source[m.start():j + 1])
    return calls


def test_config_model_calls_find_calls_across_lines():
    src = "n = build_simclr(cfg.arch, f(cfg.width),\n   cfg.stem_stride)\nm = build_simclr(\"resnet18\")"
    assert _config_model_calls(src) == ["build_simclr(cfg.arch, f(cfg.width),\n   cfg.stem_stride)"]


@pytest.mark.parametrize("nb", chapter_notebooks(), ids=lambda p: p.stem)
def test_chapters_build_the_model_their_config_describes(nb: Path):
    """A chapter that builds a network from a Config passes every architecture field (as train.build_model
    does), so a reader who changes one in the budget gets that network, e.g. the preset's wider head."""
    fields = ("cfg.arch", "cfg.width", "cfg.cifar_stem", "cfg.head", "cfg.proj_dim", "cfg.stem_stride",
              "cfg.proj_hidden")
    for cell in nbformat.read(nb, as_version=4).cells:
        for call in _config_model_calls(cell.source) if cell.cell_type == "code" else []:
            missing = [f for f in fields if f not in call]
            assert not missing, f"{nb.name}: {call!r} leaves out {missing}; pass them or use train.build_model(cfg)"


@pytest.fixture(scope="module")
def built_book(tmp_path_factory) -> Path:
    """``jupyter-book build`` of the whole book into a temporary folder, warnings as errors."""
    out = tmp_path_factory.mktemp("book")
    jb = shutil.which("jupyter-book") or str(Path(sys.executable).with_name("jupyter-book"))
    proc = subprocess.run([jb, "build", str(ROOT), "--path-output", str(out), "--warningiserror",
                           "--keep-going"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"jupyter-book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    html = out / "_build" / "html"
    assert (html / "index.html").exists()
    return html


def test_book_builds_every_page(built_book: Path):
    for doc in toc_files():
        assert (built_book / f"{doc}.html").exists(), f"page {doc}.html was not built"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def served_book(built_book: Path):
    handler = functools.partial(_Quiet, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("headless Chromium not installed (scripts/test.sh installs Debian's chromium + chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1600"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=opts)


# The book loads MathJax and fonts from public CDNs; with no internet (CI) those requests fail. Such a
# failure is the machine's, not the book's: only errors about resources outside 127.0.0.1 are excused.
_EXTERNAL = re.compile(r"https?://(?!127\.0\.0\.1)[^\s'\"]+")


def _real_errors(logs: list[dict]) -> list[str]:
    out = []
    for entry in logs:
        if entry.get("level") != "SEVERE":
            continue
        msg = entry.get("message", "")
        if _EXTERNAL.match(msg.split(" ", 1)[0]) or "net::ERR_NAME_NOT_RESOLVED" in msg \
                or "net::ERR_INTERNET_DISCONNECTED" in msg:
            continue
        out.append(msg)
    return out


def _page_problems(driver, doc: str, served_book: str, built_book: Path) -> list[str]:
    """Open one page and list what is wrong with it (the checks of the browser test)."""
    driver.get(f"{served_book}/{doc}.html")
    title = driver.title
    if "404" in title or "not found" in title.lower():
        return [f"{doc}: page missing ({title})"]
    problems: list[str] = []
    broken = driver.execute_script(
        "return Array.from(document.images)"
        ".filter(i => i.complete && i.naturalWidth === 0 && !/^https?:\\/\\/(?!127)/.test(i.src))"
        ".map(i => i.src)")
    problems += [f"{doc}: broken image {src}" for src in broken]
    text = driver.execute_script("return document.body.innerText")
    if "Traceback (most recent call last)" in text:
        problems.append(f"{doc}: a Python traceback is shown")
    if re.search(r"\b\w+Error: ", driver.execute_script(
            "return Array.from(document.querySelectorAll('.output, .cell_output'))"
            ".map(e => e.innerText).join('\\n')") or ""):
        problems.append(f"{doc}: an output shows a Python error")
    problems += [f"{doc}: console error: {m}" for m in _real_errors(driver.get_log("browser"))]
    links = driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"
        ".filter(h => h.startsWith(location.origin))")
    for href in links:
        path = href.split("#", 1)[0].split("?", 1)[0][len(served_book) + 1:]
        if path and not (built_book / path).exists():
            problems.append(f"{doc}: link to missing page {path}")
    return problems


def test_pages_in_headless_chromium(served_book: str, built_book: Path):
    driver = _browser()
    problems: list[str] = []
    try:
        for doc in toc_files():
            problems += _page_problems(driver, doc, served_book, built_book)
    finally:
        driver.quit()
    assert not problems, "\n".join(sorted(set(problems)))


def test_browser_test_catches_a_traceback(served_book: str, built_book: Path):
    """The checks above can fail: a page with a traceback and a broken image is reported."""
    bad = built_book / "_bad_page.html"
    bad.write_text("<html><head><title>bad</title></head><body><div class='output'>"
                   "Traceback (most recent call last):\nValueError: boom</div>"
                   "<img src='missing.png'><script>console.error('boom')</script></body></html>")
    driver = _browser()
    try:
        problems = _page_problems(driver, "_bad_page", served_book, built_book)
    finally:
        driver.quit()
        bad.unlink()
    assert "_bad_page: a Python traceback is shown" in problems
    assert len([p for p in problems if "broken image" in p]) == 1
    assert any("console error" in p and "boom" in p for p in problems)
