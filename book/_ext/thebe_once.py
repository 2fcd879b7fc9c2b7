"""A Sphinx extension of this book: each page loads each of its scripts once.

sphinx-thebe 0.3.1 (pulled in by jupyter-book 1) registers its inline script
``const THEBE_JS_URL = ...`` on every ``env-before-read-docs`` event, and that
event fires more than once in a ``jupyter-book build`` (sphinx-togglebutton's
inline script is doubled the same way); the second copy is an
``Uncaught SyntaxError`` in the console of every page, which
``tests/test_book.py::test_pages_in_headless_chromium`` reports. After the
documents are read, this drops the later copies from the builder's script
list (the copies differ only in how they spell "no file": None or "").
"""
from __future__ import annotations


def _once(scripts: list) -> list:
    kept, seen = [], set()
    for js in scripts:
        # an inline script's filename is None from one extension and "" from another
        key = (str(getattr(js, "filename", js) or ""), tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    return kept


def _dedupe_builder(app, env) -> None:
    for name in ("_js_files", "_orig_js_files"):
        scripts = getattr(app.builder, name, None)
        if isinstance(scripts, list):
            scripts[:] = _once(scripts)


def _dedupe_page(app, pagename, templatename, context, doctree) -> None:
    if isinstance(context.get("script_files"), list):
        context["script_files"][:] = _once(context["script_files"])


def setup(app):
    app.connect("env-updated", _dedupe_builder)
    app.connect("html-page-context", _dedupe_page, priority=1)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
