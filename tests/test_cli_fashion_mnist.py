"""A real run: one epoch of an MLP on Fashion-MNIST reaches >= 80% test accuracy.

Runs when the data is present (Debian's dataset-fashion-mnist, or $MINIGRAD_DATA); skipped
otherwise, unless MINIGRAD_REQUIRE_DATA=1 (as .ci/run sets after installing it)."""
import os
import re

import pytest
from click.testing import CliRunner

from minigrad.cli import main
from minigrad.datasets import load


def test_one_epoch_of_an_mlp_on_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGRAD_DATA", str(tmp_path / "cache"))  # never touch the user's cache
    try:
        load("fashion-mnist", "test")
    except FileNotFoundError as exc:
        if os.environ.get("MINIGRAD_REQUIRE_DATA") == "1":
            pytest.fail(f"MINIGRAD_REQUIRE_DATA=1 but Fashion-MNIST is missing: {exc}")
        pytest.skip("Fashion-MNIST is not installed")
    result = CliRunner().invoke(main, ["train", "--dataset", "fashion-mnist", "--hidden", "128",
                                       "--epochs", "1", "--batch-size", "128",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    accuracy = float(re.search(r"test accuracy ([0-9.]+)", result.output).group(1))
    assert accuracy >= 0.80
