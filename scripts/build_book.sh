#!/usr/bin/env bash
# Build the book: install the requirements and the package (editable), then render every page into
# _build/html with warnings as errors. The chapters are stored with their outputs, so nothing is
# executed. Open _build/html/index.html afterwards. Extra arguments go to `jupyter-book build`.
# On a machine without a GPU, install requirements-cpu.txt first (see the README): pip then keeps
# the CPU build of torch that it finds installed.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements.txt
python3 -m pip install -q --no-deps -e .
# jupyter-book is installed beside this python3 (a virtual environment) or on PATH (pip --user).
jb="$(python3 -c 'import sys, pathlib; print(pathlib.Path(sys.executable).with_name("jupyter-book"))')"
[ -x "$jb" ] || jb=jupyter-book
"$jb" build . --warningiserror --keep-going "$@"
echo "The book is in $PWD/_build/html/index.html"
