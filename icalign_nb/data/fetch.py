"""Public files: pinned URLs with sha256, a local data directory, the verified cache; shipped resources.

pooch downloads, checks and caches each pinned file (`_retrieve`); this module keeps the table of pins,
the public layout, the one-line report per file and the cache's `SHA256SUMS`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..cache import cache_root
from ..errors import UserError, first_line
from ..files import atomic_write_text, sha256_file
from .pins import check_pin
from .remote import REMOTE_FILES, RemoteFile

DATA_DIR_ENV = "ICALIGN_DATA_DIR"


def package_resource(name: str) -> Path:
    """Path of a data file shipped inside the package (`icalign_nb/resources/<name>`)."""
    return Path(str(resources.files("icalign_nb") / "resources" / name))


def data_root(data_dir: str | Path | None = None) -> Path | None:
    """The local data directory in force: the argument, else `ICALIGN_DATA_DIR`, else None."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV)
    return Path(chosen).expanduser() if chosen else None


def fetch(relpath: str, data_dir: str | Path | None = None) -> Path:
    """Return a local path for a public file: from the data directory, else the verified cache."""
    root = data_root(data_dir)
    if root is not None:
        path = root / relpath
        if not path.exists():
            raise UserError(f"{path}: not found in the data directory {root} (data_dir, or {DATA_DIR_ENV})")
        return check_pin(path, relpath)
    remote = REMOTE_FILES.get(relpath)
    if remote is None:
        raise UserError(f"{relpath}: not a known public file; known: {', '.join(sorted(REMOTE_FILES))}")
    path = cache_data_dir() / relpath
    if path.exists():
        try:
            return check_pin(path, relpath)
        except UserError as exc:  # a damaged cached copy: fetched again
            print(f"note: {exc}; fetching it again", file=sys.stderr)
    _retrieve(remote, cache_data_dir())
    if remote.sha256 is None:
        print(f"note: {relpath} fetched with sha256 {sha256_file(path)} (not pinned)")
    return path


def _retrieve(remote: RemoteFile, folder: Path, hint: bool = True) -> str:
    """pooch's pinned download of one file into `folder` at its public path: a copy there that matches
    the pin is kept, a missing or broken one is downloaded to a temporary file, checked against the
    pin and only then moved in place. Returns pooch's action: "fetch" (kept), "download" or "update"."""
    import httpx
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)  # pooch says each download on stderr; the callers say it in one line
    try:
        return pooch.retrieve(
            remote.url,
            remote.sha256,
            fname=remote.relpath,
            path=folder,
            downloader=_http_get,
            processor=lambda _path, action, _pooch: action,
        )
    except httpx.HTTPError as exc:
        how = f"; offline? point --data-dir or {DATA_DIR_ENV} at a directory with the same layout"
        raise UserError(f"{remote.url}: download failed ({first_line(exc)}){how if hint else ''}") from None
    except ValueError as exc:  # pooch: the download's hash is not the pinned one (it deleted the download)
        got = re.search(r"got ([0-9a-f]{64})", str(exc))
        digest = f"sha256 {got[1]}" if got else "sha256"
        raise UserError(f"{remote.url}: {digest} does not match the pinned {remote.sha256}") from None
    finally:
        logger.setLevel(level)


def _http_get(url: str, output_file: str, _pooch: object) -> None:
    """pooch's downloader over httpx, the project's HTTP client (its errors say what failed in a line)."""
    import httpx

    with httpx.stream("GET", url, follow_redirects=True, timeout=120) as response:
        response.raise_for_status()
        with open(output_file, "wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)


def verify(path: Path, relpath: str) -> bool:
    """True when a local file matches the pinned sha256 of `relpath` (or nothing is pinned)."""
    remote = REMOTE_FILES.get(relpath)
    return remote is None or remote.sha256 is None or sha256_file(path) == remote.sha256


MANIFEST = "SHA256SUMS"  # `sha256  ./relpath` per file, as `sha256sum` writes it


@dataclass(frozen=True)
class FileCheck:
    """What `fetch_files` found for one public file."""

    relpath: str
    ok: bool
    message: str  # one line: "fetched", "in the cache, sha256 matches", "download failed (…)", …


def cache_data_dir() -> Path:
    """Where pinned fetches are kept: `<cache root>/data`, in the public layout."""
    return cache_root() / "data"


def select_files(names: Sequence[str]) -> list[RemoteFile]:
    """Public files by path (`paper_release/x.jsonl`), file name or folder (`paper_release`); all if none."""
    if not names:
        return list(REMOTE_FILES.values())
    chosen: list[RemoteFile] = []
    for name in names:
        key = name.strip("/")
        found = [
            f
            for f in REMOTE_FILES.values()
            if key in (f.relpath, f.relpath.split("/")[0], Path(f.relpath).name, Path(f.relpath).stem)
        ]
        if not found:
            folders = sorted({f.relpath.split("/")[0] for f in REMOTE_FILES.values()})
            raise UserError(f"'{name}' names no public file; folders: {', '.join(folders)} (or a file path)")
        chosen += [f for f in found if f not in chosen]
    return chosen


def fetch_files(names: Sequence[str] = (), data_dir: str | Path | None = None) -> Iterator[FileCheck]:
    """Fetch the chosen public files into the cache, checking each against its pinned sha256 (a broken
    cached copy is fetched again); with a data directory, check the files there against the pins
    instead (nothing is downloaded). The cache's `SHA256SUMS` then lists what it holds intact."""
    root = data_root(data_dir)
    if root is not None:
        for remote in select_files(names):
            yield _check_local(remote, root / remote.relpath)
        return
    checked: dict[str, bool] = {}
    for remote in select_files(names):
        check = _fetch_into_cache(remote)
        checked[remote.relpath] = check.ok
        yield check
    write_manifest(cache_data_dir(), checked)


def _fetch_into_cache(remote: RemoteFile) -> FileCheck:
    """A pinned file in the cache: kept if intact, else (missing or broken) fetched again."""
    try:
        action = _retrieve(remote, cache_data_dir(), hint=False)
    except UserError as exc:
        return FileCheck(remote.relpath, False, str(exc))
    said = {
        "fetch": "in the cache",
        "download": "fetched",
        "update": "fetched again (the cached copy was broken)",
    }
    if remote.sha256 is None:
        digest = sha256_file(cache_data_dir() / remote.relpath)
        return FileCheck(remote.relpath, True, f"{said[action]}, not pinned (sha256 {digest})")
    return FileCheck(remote.relpath, True, f"{said[action]}, sha256 matches the pin")


def _check_local(remote: RemoteFile, path: Path) -> FileCheck:
    """A file of a local data directory against its pin."""
    if not path.is_file():
        return FileCheck(remote.relpath, False, f"not found at {path}")
    if remote.sha256 is None:
        return FileCheck(remote.relpath, True, "present (not pinned: no sha256 to check)")
    digest = sha256_file(path)  # hashed once: a large file is read once
    if digest == remote.sha256:
        return FileCheck(remote.relpath, True, "sha256 matches")
    return FileCheck(
        remote.relpath, False, f"{path}: sha256 {digest} does not match the pin (a changed or broken copy)"
    )


def write_manifest(folder: Path, checked: dict[str, bool] | None = None) -> None:
    """`SHA256SUMS` over the pinned files a folder holds (only those that match their pins); files
    already checked (`checked`: relpath -> matches) are not hashed again."""
    checked = checked or {}

    def intact(relpath: str) -> bool:
        if relpath in checked:
            return checked[relpath]
        return (folder / relpath).is_file() and verify(folder / relpath, relpath)

    lines = [f"{f.sha256}  ./{f.relpath}" for f in REMOTE_FILES.values() if f.sha256 and intact(f.relpath)]
    if lines:
        atomic_write_text(folder / MANIFEST, "\n".join(lines) + "\n")


def complete(folder: Path) -> bool:
    """True when `folder` holds every pinned public file (as `icalign data fetch` leaves the cache)."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return False
    listed = {
        line.split()[-1].removeprefix("./") for line in manifest.read_text().splitlines() if line.strip()
    }
    return all(f.relpath in listed for f in REMOTE_FILES.values() if f.sha256)
