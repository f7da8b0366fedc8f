"""Shared fixtures: where the real CIFAR-10 image folder is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """``$MLPLAB_DATA`` or ``../shared/data/cifar10-images``; in CI its absence is a failure."""
    env = os.environ.get("MLPLAB_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data" / "cifar10-images"
    if not path.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"real CIFAR-10 data not found at {path}")
        pytest.skip(f"real CIFAR-10 data not found at {path}")
    return path
