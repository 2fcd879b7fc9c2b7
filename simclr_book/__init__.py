"""simclr_book: the book's kit, beside the package it teaches.

The chapters of the book (``book/*.ipynb``) import :mod:`simclr_lite` for
SimCLR itself and this package for what only the book needs:

- :mod:`simclr_book.budget`: the budgets (``SIMCLR_BUDGET=auto|smoke|cpu|gpu``,
  one setting sizes every experiment), the chapters' data, the shared models
  and sweep arms (trained once, through :mod:`simclr_book.cache`), the
  Markdown tables, glue and the results of the full-scale runs
  (``book/results/gpu/``).
- :mod:`simclr_book.cache`: the run cache (a run trained once, keyed by its
  config, data and code; it recovers from kills and damaged entries) and
  results computed once (:func:`~simclr_book.cache.cached_result`).
- :mod:`simclr_book.verdict`: the noise rule for a gap over seeds.

``simclr_lite`` never imports this package; the same ``pip install`` installs
both.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
