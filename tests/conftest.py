"""Shared fixtures: where the public reference data lives, and small real models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The one setting that locates ../shared/data (CI always has it; a user's clone may not).
SHARED_DATA = Path(os.environ.get("ICALIGN_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The public reference data directory, or a skip with a one-line reason."""
    if not (SHARED_DATA / "SHA256SUMS").exists():
        pytest.skip(f"reference data not found at {SHARED_DATA} (set ICALIGN_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture()
def data_env(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the package's data loading at the shared reference data."""
    monkeypatch.setenv("ICALIGN_DATA_DIR", str(shared_data))
    return shared_data


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The real SmolLM2 tokenizer (shared by `tiny-random`), left-padded."""
    from icalign_nb.models import load_tokenizer

    return load_tokenizer("tiny-random")
