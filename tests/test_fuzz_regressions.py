"""Inputs the fuzz targets (tests/fuzz) once failed on, replayed through their
target: each must now end normally or with the target's documented error."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).parent / "fuzz"
sys.path.insert(0, str(FUZZ))
import contextlib

import targets

INPUTS = sorted((FUZZ / "regressions").iterdir())


@pytest.fixture(scope="module")
def prepared():
    """Each target, set up once."""
    work = targets.workdir()
    for target in targets.TARGETS.values():
        target.setup(work, None)
    return targets.TARGETS


@pytest.mark.parametrize("path", INPUTS, ids=[p.name for p in INPUTS])
def test_a_once_failing_input_ends_with_the_documented_error(prepared, path):
    target = prepared[path.name.split("-", 1)[0]]
    with contextlib.suppress(target.errors):
        target.one(path.read_bytes())
