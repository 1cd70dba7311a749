"""Public files checked against their pins wherever they are read, not only when fetched.

A file read as public data — from a data directory, a release folder, or named like a release file —
whose name is pinned (`fetch.REMOTE_FILES`) must have the pinned sha256: a changed or truncated copy is
refused in one line, never read into a number. A file whose name has no pin is read with one line saying
so. Each file is hashed once per process for as long as its size and modification time stay the same.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from ..errors import UserError
from ..files import sha256_file
from .fetch import REMOTE_FILES, RemoteFile

# The pinned public files by file name (a release folder may hold them under any folder name).
BY_NAME: dict[str, RemoteFile] = {Path(f.relpath).name: f for f in REMOTE_FILES.values()}


@functools.lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


@functools.lru_cache(maxsize=256)
def _say_not_pinned(path: str) -> None:
    print(f"note: {path}: not a pinned file (no sha256 to check it against); read as it is", file=sys.stderr)


def check_pin(path: str | Path, relpath: str | None = None) -> Path:
    """`path` once its content matches the pin of `relpath` (else of its file name); a file without a pin
    passes with one line saying so; a pinned one with other content is one line naming it and the pin."""
    path = Path(path)
    remote = REMOTE_FILES.get(relpath) if relpath else BY_NAME.get(path.name)
    if remote is None or remote.sha256 is None:
        _say_not_pinned(str(path))
        return path
    if not path.is_file():
        return path  # a missing file or a folder is its reader's one line
    found = path.resolve().stat()
    digest = _digest(str(path.resolve()), found.st_size, found.st_mtime_ns)
    if digest != remote.sha256:
        raise UserError(
            f"{path}: sha256 {digest[:16]}… is not the pinned {remote.sha256[:16]}… of {remote.relpath} "
            "(a changed or truncated copy); restore it (`icalign data fetch` gets or checks the pinned "
            "files), or give a file of your own another name"
        )
    return path
