"""Shared fixtures: where the public reference data lives, and small real models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Idle OpenMP threads sleep, as the command line and the notebook kernels set them (set before torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The one setting that locates ../shared/data (CI always has it; a user's clone may not).
SHARED_DATA = Path(os.environ.get("ICALIGN_SHARED_DATA", ROOT.parent / "shared" / "data"))
# Files of ../shared/data that are not public downloads (the project's own summaries): tests reading
# them skip when the data comes from the cache instead.
SHARED_ONLY = {"test_paper_prompt_is_built_from_the_fetched_fastchat_row": "judge/paper_pairwise_judge.json"}


def reference_data() -> Path | None:
    """The reference data in force: ../shared/data (ICALIGN_SHARED_DATA), else the cache's data folder
    once `icalign data fetch` has fetched every pinned file into it, else None."""
    from icalign_nb.data.fetch import cache_data_dir, complete

    if (SHARED_DATA / "SHA256SUMS").exists():
        return SHARED_DATA
    return cache_data_dir() if complete(cache_data_dir()) else None


@pytest.fixture()
def shared_data(request: pytest.FixtureRequest) -> Path:
    """The public reference data directory, or a skip with a one-line reason."""
    found = reference_data()
    if found is None:
        pytest.skip(
            f"reference data not found at {SHARED_DATA} nor in the cache: run `icalign data fetch` "
            "(or set ICALIGN_SHARED_DATA)"
        )
    needs = SHARED_ONLY.get(request.node.originalname)
    if needs and not (found / needs).exists():
        pytest.skip(f"{needs} is kept only in the project's shared data, not a public download")
    return found


@pytest.fixture()
def data_env(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the package's data loading at the shared reference data."""
    monkeypatch.setenv("ICALIGN_DATA_DIR", str(shared_data))
    return shared_data


@pytest.fixture(scope="session", autouse=True)
def step_kernels_built() -> None:
    """The decode-step kernels built once into the default cache before any test moves the cache
    elsewhere (tests with caches of their own link to it: `share_builds`)."""
    from icalign_nb.generation.native import step_kernels

    step_kernels()


@pytest.fixture()
def built_kernels() -> object:
    """The decode-step kernels, built here (skips only where there is no C++ compiler at all)."""
    import shutil

    from icalign_nb.generation.native import step_kernels

    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler here to build the decode-step kernels")
    kernels = step_kernels()
    assert kernels is not None, "a C++ compiler is here, yet the decode-step kernels were not built"
    return kernels


def share_builds(cache: Path) -> None:
    """Give a fresh cache root the default cache's converted models and built kernels (linked)."""
    from icalign_nb.cache import cache_root

    shared = cache_root()
    for kind in ("models", "kernels"):
        if (shared / kind).is_dir():
            cache.mkdir(parents=True, exist_ok=True)
            (cache / kind).symlink_to(shared / kind)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The real SmolLM2 tokenizer (shared by `tiny-random`), left-padded."""
    from icalign_nb.models.loading import load_tokenizer

    return load_tokenizer("tiny-random")
