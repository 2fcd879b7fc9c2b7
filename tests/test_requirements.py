"""requirements-cpu.txt: the packages of requirements.txt, with torch and torchvision from PyTorch's CPU index.

Parsed with pip's own requirements-file parser (what ``pip install -r`` runs), so that ``-r`` and
``--extra-index-url`` mean here what they mean to pip. No test here downloads anything.
"""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pip internals import pkg_resources

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def parse(path: Path) -> tuple[list[str], list[str], list[str]]:
    """(requirements, index URLs, extra index URLs) of a requirements file, ``-r`` includes followed."""
    try:
        from pip._internal.network.session import PipSession
        from pip._internal.req.req_file import RequirementsFileParser, get_line_parser
    except ImportError:  # pragma: no cover - pip's internal layout changed
        pytest.skip("this pip has no pip._internal.req.req_file.RequirementsFileParser")
    lines = list(RequirementsFileParser(PipSession(), get_line_parser(None)).parse(str(path), constraint=False))
    reqs = [line.requirement for line in lines if line.is_requirement]
    opts = [line.opts for line in lines if not line.is_requirement]
    return (reqs, [o.index_url for o in opts if getattr(o, "index_url", None)],
            [u for o in opts for u in (getattr(o, "extra_index_urls", None) or [])])


def test_cpu_requirements_are_the_same_packages_plus_the_cpu_index():
    base, base_index, base_extra = parse(ROOT / "requirements.txt")
    cpu, cpu_index, cpu_extra = parse(ROOT / "requirements-cpu.txt")
    assert base and cpu == base                      # every package, the same specifiers, nothing else
    assert base_index == base_extra == []            # requirements.txt: PyPI only (the README's command)
    assert cpu_extra == [CPU_INDEX]                  # an extra index: PyPI still serves jupyter-book & co.
    assert cpu_index == []                           # --index-url would drop PyPI, and with it the book's tools


def test_the_cpu_wheels_win_over_pypis():
    """pip picks the highest version that fits: a release's "+cpu" build from the CPU index must fit the
    specifiers of requirements.txt and sort above the same release on PyPI (whose Linux wheel is CUDA's)."""
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.version import Version

    reqs = {Requirement(r).name: Requirement(r).specifier for r in parse(ROOT / "requirements-cpu.txt")[0]}
    import torch
    import torchvision
    for name, module in (("torch", torch), ("torchvision", torchvision)):
        release = module.__version__.split("+")[0]   # the release installed here, a version pip would choose
        assert reqs[name].contains(f"{release}+cpu") and Version(f"{release}+cpu") > Version(release), name
