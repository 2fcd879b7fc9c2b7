#!/usr/bin/env bash
# Install everything the tests need, then run them (unit tests, then the book's notebooks).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements.txt
python3 -m pip install -q --no-deps -e .
python3 -m pytest tests "$@"
