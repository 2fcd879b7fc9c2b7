"""The rendered book: `jupyter-book build` with warnings as errors, then every page in headless Chromium.

The build never executes notebooks (``execute_notebooks: off``): it renders
the outputs stored in ``book/*.ipynb``. The browser test serves the HTML on
127.0.0.1 to a Chromium that cannot resolve any other host (the network is off
for it) and fails on a page of the table of contents that is missing, a broken
image, a Python traceback in an output, an error in the console, a paragraph or
output of raw pipe-table text, visible ``NBVAL`` text, an output or image wider
than the text column at a 1280 px window, maths that MathJax (served from the
book's own ``_static``) did not render, or a code cell above the page's title.
With ``BOOK_SHOTS=DIR`` it also saves a full-page screenshot of every page there.
Chromium (Debian's ``chromium`` + ``chromium-driver``) is installed by
``scripts/test.sh`` when missing; without it the browser test is skipped.
"""
from __future__ import annotations

import functools
import http.server
import os
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


@pytest.mark.parametrize("nb", chapter_notebooks(), ids=lambda p: p.stem)
def test_chapter_opens_with_its_title_and_keeps_nbval_markers_in_tags(nb: Path):
    """The title cell comes first (the Colab cell after it), and nbval's markers are cell tags, which the
    rendered page does not show, not comments in the code, which it does; every chapter closes with
    exercises and opens with how it departs from the paper."""
    cells = nbformat.read(nb, as_version=4).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.lstrip().startswith("# "), \
        f"{nb.name}: the first cell must be the chapter's title"
    for i, cell in enumerate(cells):
        if cell.cell_type == "code":
            assert "NBVAL" not in cell.source, f"{nb.name}: cell {i} has an nbval comment; use a cell tag"
    text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert "Where this chapter departs from the paper" in text and "## Exercises" in text, nb.name
    assert ":class: dropdown" in text, f"{nb.name}: exercises need collapsed solutions"


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


_MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|root|tmp|home|Users)/")


@pytest.mark.parametrize("nb", chapter_notebooks(), ids=lambda p: p.stem)
def test_stored_outputs_name_no_machine_path(nb: Path):
    """Recorded commands and folders are shown as PATH, <tmp>/... or repository-relative, never as the path
    they had on the machine that executed the chapter."""
    for i, cell in enumerate(nbformat.read(nb, as_version=4).cells):
        for out in cell.get("outputs", []):
            texts = [out.get("text", "")] + [v for k, v in out.get("data", {}).items() if k.startswith("text/")]
            for text in texts:
                m = _MACHINE_PATH.search(text)
                assert not m, f"{nb.name}: cell {i} shows a machine path: {text[max(0, m.start() - 60):m.end() + 40]}"


@pytest.mark.parametrize("nb", chapter_notebooks(), ids=lambda p: p.stem)
def test_chapter_says_which_budget_it_picked(nb: Path):
    """The set-up cell (the first code cell after the Colab one) prints the budget get_budget() picked and why
    (``auto``: gpu where CUDA is visible); its output differs by machine, so nbval ignores it."""
    setup = [c for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code"][1]
    assert "get_budget()" in setup.source and "print(BUDGET.how_picked())" in setup.source, nb.name
    assert "nbval-ignore-output" in setup.metadata.get("tags", []), nb.name
    assert "simclr_lite.budget" not in setup.source, f"{nb.name}: the budgets live in simclr_book.budget"


def _calls(source: str, name: str) -> list[str]:
    """Every call of the function ``name`` (also as ``module.name``) in a cell's source, arguments included."""
    calls = []
    for m in re.finditer(r"(?<![\w.])(?:\w+\.)?" + name + r"\(", source):
        if source[max(0, m.start() - 4):m.start()] == "def ":
            continue
        depth, j = 0, m.end() - 1
        for j in range(m.end() - 1, len(source)):
            depth += {"(": 1, ")": -1}.get(source[j], 0)
            if depth == 0:
                break
        calls.append(source[m.start():j + 1])
    return calls


def test_calls_find_calls_across_lines_and_skip_definitions():
    src = "def fine_tune(x):\n    pass\nr = evaluate.fine_tune(enc, a,\n  device=D)\nh = extract_features(e, x)"
    assert _calls(src, "fine_tune") == ["evaluate.fine_tune(enc, a,\n  device=D)"]
    assert _calls(src, "extract_features") == ["extract_features(e, x)"]


@pytest.mark.parametrize("nb", chapter_notebooks(), ids=lambda p: p.stem)
def test_chapters_evaluate_on_the_budgets_device(nb: Path):
    """Every feature extraction, fine-tuning and run loaded names its device (the budget's), so a model that
    comes back from the run cache on the CPU runs on the GPU at the gpu budget."""
    for i, cell in enumerate(nbformat.read(nb, as_version=4).cells):
        if cell.cell_type != "code":
            continue
        for name in ("extract_features", "fine_tune", "load_run"):
            for call in _calls(cell.source, name):
                assert "device=" in call, f"{nb.name}: cell {i}: {call!r} runs wherever the model happens to be"


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
    """A chapter that builds a network from a Config passes every architecture field (as config.build_model
    does), so a reader who changes one in the budget gets that network, e.g. the preset's wider head."""
    fields = ("cfg.arch", "cfg.width", "cfg.cifar_stem", "cfg.head", "cfg.proj_dim", "cfg.stem_stride",
              "cfg.proj_hidden")
    for cell in nbformat.read(nb, as_version=4).cells:
        for call in _config_model_calls(cell.source) if cell.cell_type == "code" else []:
            missing = [f for f in fields if f not in call]
            assert not missing, f"{nb.name}: {call!r} leaves out {missing}; pass them or use config.build_model(cfg)"


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
    # every host but 127.0.0.1 fails to resolve: the pages must work with the network off (MathJax included)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1600", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=opts)


# The browser cannot reach anything outside 127.0.0.1; a page may still ask (e.g. for a web font), and such a
# failure is excused in the console check. What the reader needs (MathJax, images) must be local: the checks
# below fail on unrendered maths and broken local images.
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
    problems += [f"{doc}: {p}" for p in driver.execute_script(_LAYOUT_JS)]
    problems += _math_problems(driver, doc)
    problems += [f"{doc}: console error: {m}" for m in _real_errors(driver.get_log("browser"))]
    links = driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"
        ".filter(h => h.startsWith(location.origin))")
    for href in links:
        path = href.split("#", 1)[0].split("?", 1)[0][len(served_book) + 1:]
        if path and not (built_book / path).exists():
            problems.append(f"{doc}: link to missing page {path}")
    return problems


# Presentation checks, run in the page. Each returns a list of problems (strings).
_LAYOUT_JS = r"""
const out = [];
const col = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
const colRect = col.getBoundingClientRect();
const short = el => (el.innerText || el.src || el.tagName).trim().slice(0, 60).replace(/\s+/g, ' ');
// raw pipe tables: a Markdown table shown as text in a paragraph or an output
// (a paragraph joins the table's lines, so look for the header separator anywhere: |---|)
const sep = /\|\s*:?-{3,}:?\s*\|/;
for (const el of col.querySelectorAll('p, .cell_output pre, .output pre')) {
  if (sep.test(el.innerText)) out.push('raw pipe-table text: ' + short(el));
}
// nbval markers
if (/NBVAL/.test(document.body.innerText)) out.push('visible NBVAL marker text');
// outputs and images wider than the text column (cut off, or scrolled sideways)
const wide = [];
for (const el of col.querySelectorAll('.cell_output, .cell_output *, img, article.bd-article table')) {
  const r = el.getBoundingClientRect();
  if (r.width === 0) continue;
  if (r.right > colRect.right + 2 || r.left < colRect.left - 2) wide.push('wider than the column (' +
      Math.round(r.width) + ' px in ' + Math.round(colRect.width) + ' px): ' + el.tagName + ' ' + short(el));
  else if (el.scrollWidth > el.clientWidth + 2 && getComputedStyle(el).overflowX !== 'visible')
    wide.push('scrolls sideways (' + el.scrollWidth + ' px in ' + el.clientWidth + ' px): ' + el.tagName + ' ' + short(el));
}
out.push(...wide.slice(0, 5));
// a code cell above the title
const h1 = col.querySelector('h1');
const cell = col.querySelector('.cell, div.highlight');
if (h1 && cell && (cell.compareDocumentPosition(h1) & Node.DOCUMENT_POSITION_FOLLOWING)) out.push('a code cell comes before the title');
return out;
"""

# Wait (up to 20 s) for MathJax to typeset, then list maths it did not render and a MathJax loaded from elsewhere.
_MATH_JS = r"""
const done = arguments[arguments.length - 1];
const maths = document.querySelectorAll('.math');
if (!maths.length) { done({maths: 0}); return; }
const src = Array.from(document.scripts).map(s => s.src).filter(s => /mathjax/i.test(s));
const report = () => done({maths: maths.length, src: src,
  raw: Array.from(maths).filter(m => !m.querySelector('mjx-container')).length,
  containers: document.querySelectorAll('mjx-container').length});
let waited = 0;
(function poll() {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { MathJax.startup.promise.then(report, report); return; }
  if ((waited += 200) > 20000) { report(); return; }
  setTimeout(poll, 200);
})();
"""


def _math_problems(driver, doc: str) -> list[str]:
    driver.set_script_timeout(30)
    r = driver.execute_async_script(_MATH_JS)
    if not r["maths"]:
        return []
    problems = []
    local = [s for s in r["src"] if s.startswith(driver.execute_script("return location.origin")) and "/_static/" in s]
    if not local:
        problems.append(f"{doc}: MathJax is not loaded from the book's _static folder ({r['src'] or 'no script'})")
    if r["raw"] or not r["containers"]:
        problems.append(f"{doc}: {r['raw']} of {r['maths']} maths not rendered with the network off")
    return problems


def _screenshot(driver, path: Path) -> None:
    """A full-page screenshot at the window's width (1280 px)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": 1280, "height": min(height, 30000), "scale": 1}})
    import base64
    path.write_bytes(base64.b64decode(shot["data"]))


def test_pages_in_headless_chromium(served_book: str, built_book: Path):
    driver = _browser()
    problems: list[str] = []
    shots = Path(os.environ["BOOK_SHOTS"]) if os.environ.get("BOOK_SHOTS") else None
    try:
        for doc in toc_files():
            problems += _page_problems(driver, doc, served_book, built_book)
            if shots:
                shots.mkdir(parents=True, exist_ok=True)
                _screenshot(driver, shots / f"{Path(doc).name}.png")
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


def test_browser_test_catches_presentation_defects(served_book: str, built_book: Path):
    """A built chapter page, spoiled in each way the page test checks, reports each defect."""
    page = next(built_book.glob("book/0[1-9]_*.html"))
    html = page.read_text()
    title = re.compile(r"<h1[^>]*>").search(html, html.find("<article"))
    assert title and html.find("<article") >= 0, f"{page.name} has no <h1> in its <article>"
    wide_png = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
    spoilt = (html[:title.start()]
              + "<div class='cell docutils container'><div class='highlight'><pre>x = 1</pre></div></div>"
              + html[title.start():])
    spoilt = spoilt.replace("</article>",
        "<p>| run | loss |\n|---|---|\n| a | 1 |</p><p># NBVAL_IGNORE_OUTPUT</p>"
        "<div class='cell_output docutils container'><div class='output text_plain highlight-myst-ansi notranslate'>"
        "<div class='highlight'><pre style='white-space: pre'>" + "x" * 400 + "</pre></div></div>"
        f"<img src='data:image/png;base64,{wide_png}' style='width: 2000px; max-width: none'></div>"
        "<p><span class='math notranslate nohighlight'>\\(zzz\\)</span></p></article>", 1)
    # MathJax from a CDN, which the browser cannot reach
    spoilt = re.sub(r'src="[^"]*mathjax[^"]*"', 'src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"', spoilt)
    bad = page.with_name("_spoilt.html")
    bad.write_text(spoilt)
    doc = str(bad.relative_to(built_book).with_suffix(""))
    driver = _browser()
    try:
        problems = _page_problems(driver, doc, served_book, built_book)
    finally:
        driver.quit()
        bad.unlink()
    text = "\n".join(problems)
    assert "raw pipe-table text" in text, text
    assert "visible NBVAL marker text" in text, text
    assert "wider than the column" in text or "scrolls sideways" in text, text
    assert "a code cell comes before the title" in text, text
    assert "MathJax is not loaded from the book's _static folder" in text, text
    assert "not rendered with the network off" in text, text


def test_no_helper_is_defined_in_two_chapters():
    """Issue 30: a helper two chapters need lives in the kit (simclr_book), not copied into each notebook
    (the issue found gpu_cell five times, in different versions, and the verdict rule in a dozen)."""
    where: dict[str, set[str]] = {}
    for nb in chapter_notebooks():
        for cell in nbformat.read(nb, as_version=4).cells:
            if cell.cell_type == "code":
                for m in re.finditer(r"^(?:def|class) (\w+)|^(\w+) = lambda", cell.source, re.M):
                    where.setdefault(m.group(1) or m.group(2), set()).add(nb.stem[:2])
    twice = {name: sorted(chs) for name, chs in where.items() if len(chs) > 1}
    assert not twice, f"defined in several chapters (move them to simclr_book): {twice}"


def test_the_chapters_hold_at_most_3000_lines_of_code():
    """Issue 30: the notebooks held about 3,900 non-blank lines of code, as many as the package; the book's
    machinery moved to simclr_book, and the chapters keep what they teach within 3,000 lines."""
    lines = {nb.stem[:2]: sum(1 for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code"
                              for line in c.source.splitlines() if line.strip()) for nb in chapter_notebooks()}
    assert len(lines) == 7 and sum(lines.values()) <= 3000, lines
