"""Shared fixtures: the real data folder (skipped with a reason where it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_sdk.data.sources import default_data_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = default_data_dir()
    if d is None:
        pytest.skip("../shared/data is absent: real-data tests need FSDD and MNIST beside the checkout")
    return d


@pytest.fixture(scope="session")
def fsdd(data_dir) -> Path:
    return data_dir / "fsdd" / "recordings"


@pytest.fixture(scope="session")
def mnist(data_dir) -> Path:
    return data_dir / "mnist"
