#!/usr/bin/env bash
# Install everything the tests need, then run them: the unit tests (tests/, which also build the
# book and open every page in headless Chromium), then the >>> examples in simclr_lite's docstrings,
# then every chapter notebook at the smoke budget under nbval against its stored outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements.txt
python3 -m pip install -q --no-deps -e .
# Headless Chromium for the page test (Debian's packages; needs root and apt-get).
if ! command -v chromedriver >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
    >/dev/null 2>&1 || echo "warning: could not install chromium; the browser test will be skipped"
fi
# Arguments go to this pytest (e.g. tests/test_losses.py -x); without a path it runs tests/ (testpaths).
python3 -m pytest "${@:-tests}"
# The >>> usage examples in the package's docstrings (every module imports cleanly, __main__.py included).
python3 -m pytest --doctest-modules simclr_lite simclr_book -q -p no:cacheprovider
# The book's chapters need CIFAR-10: $SIMCLR_DATA, data/, or torchvision's download.
if python3 -c "from simclr_lite.data import load_cifar10; load_cifar10(train=False, download=True)" >/dev/null 2>&1; then
  SIMCLR_BUDGET=smoke python3 -m pytest --nbval --nbval-current-env --nbval-sanitize-with book/nbval_sanitize.cfg \
    --nbval-cell-timeout 900 -p no:cacheprovider book/[0-9][0-9]_*.ipynb
else
  echo "SKIPPED the book's notebooks: no CIFAR-10 found (set SIMCLR_DATA) and the download failed"
fi
