"""The ``>>>`` usage examples in the public API's docstrings exist and run (issue 29).

``scripts/test.sh`` also runs every docstring example of the package with
``pytest --doctest-modules simclr_lite``; this test makes a missing or broken
example of the main public objects fail the unit tests too.
"""
from __future__ import annotations

import doctest

import pytest

from simclr_lite import augment, evaluate, losses, models, optim, train

PUBLIC = {
    "nt_xent": (losses, losses.nt_xent),
    "SimCLRAugment": (augment, augment.SimCLRAugment),
    "build_simclr": (models, models.build_simclr),
    "LARS": (optim, optim.LARS),
    "knn_predict": (evaluate, evaluate.knn_predict),
    "linear_eval": (evaluate, evaluate.linear_eval),
    "pretrain": (train, train.pretrain),
}


def _own_doctest(name: str) -> doctest.DocTest:
    """The doctest of the object's own docstring (not of its methods)."""
    module, obj = PUBLIC[name]
    # recurse=False: a class's methods have docstrings of their own, without examples
    tests = doctest.DocTestFinder(recurse=False).find(obj, name, module=module, globs={})
    assert len(tests) == 1, f"{name}: no docstring found"
    return tests[0]


@pytest.mark.parametrize("name", list(PUBLIC))
def test_public_docstring_example_runs(name: str) -> None:
    test = _own_doctest(name)
    assert len(test.examples) >= 1, f"{name}'s docstring has no >>> example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted == len(test.examples)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (output above)"
