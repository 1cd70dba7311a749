"""One cache root and one key scheme for everything computed once and kept.

Every cached artifact lives at `<root>/<kind>/<key><suffix>`, where the key is a hash of what the
artifact depends on (content, never a machine's paths). Kinds: `data` (pinned fetches, kept under
their public layout instead), `embeddings` (texts through one encoder), `lengths` (demo token
counts), `maps` (pool maps), `models` (converted models), `judgments` (judge replies).
The root is `ICALIGN_CACHE`, else `$XDG_CACHE_HOME/icalign-nb`, else `~/.cache/icalign-nb`;
the command line's `--cache-dir` sets `ICALIGN_CACHE` for its process.
"""

from __future__ import annotations

import os
from pathlib import Path

from .files import sha256_text

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
