"""simclr_book: the book's kit, beside the package it teaches.

The chapters of the book (``book/*.ipynb``) import :mod:`simclr_lite` for
SimCLR itself and this package for what only the book needs:

- :mod:`simclr_book.budget`: the budgets (``SIMCLR_BUDGET=auto|smoke|cpu|gpu``,
  one setting sizes every experiment), the chapters' data, the shared models
  and sweep arms (trained once, through :mod:`simclr_book.cache`), the
  Markdown tables and glue.
- :mod:`simclr_book.cache`: the run cache (a run trained once, keyed by its
  config, data and code; it recovers from kills and damaged entries) and
  results computed once (:func:`~simclr_book.cache.cached_result`).
- :mod:`simclr_book.verdict`: the book's one verdict rule, as records.
- :mod:`simclr_book.specs`: each finding of the paper, the parts that measure it
  (arms, seeds, per budget) and the rows that decide it, written once.
- :mod:`simclr_book.plan`: what each part trains at a budget and its estimated
  minutes (``python -m simclr_book.plan``).
- :mod:`simclr_book.fullscale`: runs a part and writes its results file
  (``python -m simclr_book.fullscale PART``); the chapters' full-scale cells.
- :mod:`simclr_book.augmentation_study` (chapter 2),
  :mod:`simclr_book.heads` (chapter 4),
  :mod:`simclr_book.batch_study` (chapter 5),
  :mod:`simclr_book.evaluation_book` (chapters 1 and 6) and
  :mod:`simclr_book.scaling_book` (chapter 7): the chapters' loops, tables and
  figures, so that a notebook shows what it teaches, not its plumbing.

``simclr_lite`` never imports this package; the same ``pip install`` installs
both.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
