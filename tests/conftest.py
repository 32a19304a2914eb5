"""Shared fixtures: where the reference vectors and shared data live.

Tests that need ``$GLMTUNE_REFERENCE`` skip when it is unset on a developer machine, but in CI
(``CI`` set) a missing reference is an error, so those tests can never silently skip there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


def _env_dir(var: str) -> Path | None:
    value = os.environ.get(var)
    if not value:
        return None
    path = Path(value)
    return path if path.is_dir() else None


def _require(var: str) -> Path:
    path = _env_dir(var)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"${var} is not set or not a folder; CI must run these tests")
        pytest.skip(f"${var} not set")
    return path


@pytest.fixture(scope="session")
def reference() -> Path:
    """Root of the THUDM reference vectors (``$GLMTUNE_REFERENCE``)."""
    return _require("GLMTUNE_REFERENCE")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the shared public data (``$GLMTUNE_SHARED_DATA``)."""
    return _require("GLMTUNE_SHARED_DATA")


@pytest.fixture(autouse=True, scope="session")
def _few_threads() -> None:
    # 2-core CI machine: one intra-op thread keeps tiny-model tests fast and deterministic.
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
