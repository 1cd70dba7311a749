"""One cache root and one key scheme for everything computed once and kept.

Every cached artifact lives at `<root>/<kind>/<key><suffix>`, where the key is a hash of what the
artifact depends on (content, never a machine's paths). Kinds: `data` (pinned fetches, kept under
their public layout instead), `embeddings` (texts through one encoder), `lengths` (demo token
counts), `maps` (pool maps), `models` (converted models), `judgments` (judge replies), `kernels`
(C++ built for this machine).
The root is `ICALIGN_CACHE`, else `$XDG_CACHE_HOME/icalign-nb`, else `~/.cache/icalign-nb`;
the command line's `--cache-dir` sets `ICALIGN_CACHE` for its process.
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import first_line
from .files import sha256_text

if TYPE_CHECKING:
    import numpy as np

CACHE_ENV = "ICALIGN_CACHE"


def cache_root() -> Path:
    """The cache root in force."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "icalign-nb"
    )
    return Path(root)


def cache_key(*parts: str) -> str:
    """The key of an artifact: a hash of the parts it depends on."""
    return sha256_text(*parts)[:32]


def cache_path(kind: str, *parts: str, suffix: str = "") -> Path:
    """Where the artifact of `kind` keyed by `parts` lives."""
    return cache_root() / kind / f"{cache_key(*parts)}{suffix}"


def damaged(path: Path, problem: str) -> None:
    """Say in one line that a cache entry is damaged, and remove it: what needs it builds it again."""
    print(f"note: damaged cache entry {path} ({problem}); it is built again", file=sys.stderr)
    path.unlink(missing_ok=True)


def load_arrays(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """The named arrays of a cached `.npz` file, or None (said, and the file removed) when it is damaged."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in names}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        damaged(path, first_line(exc))
        return None
