"""The examples run (briefly)."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import PROJECT_ROOT

pytest.importorskip("torch")


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_consumer_to_torch_trains_on_a_served_stream(capsys):
    example = load_example("consumer_to_torch")
    assert example.main(["--local", "--steps", "30", "--batch-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "30 steps, final loss" in out
