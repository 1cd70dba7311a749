"""Atomic writes, resumable JSON Lines appends and line-checked JSON Lines reads."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UserError, where

if TYPE_CHECKING:
    import polars as pl


def _umask() -> int:
    """The process's file-creation mask (read without changing it for long)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def output_target(path: str | Path) -> Path:
    """Where a write to `path` lands: a symlink's target (the link itself is kept)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def check_writable(path: str | Path) -> Path:
    """Refuse, before any work, an output that cannot be written: a folder, a place where no file can
    be created (e.g. under /proc), a read-only file. Returns the path the write will land on."""
    target = output_target(path)
    if target.is_dir():
        raise UserError(f"{path}: is a folder; name a file to write")
    if target.exists():
        if target.is_file() and not os.access(target, os.W_OK):
            raise UserError(f"{path}: not writable")
        return target
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{path}: cannot write there ({exc.strerror or exc})") from None
    return target


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never half.

    A symlink is written through to its target; a FIFO or device is written in place (never replaced
    by a regular file); a new file gets the usual permissions (0666 less the umask).
    """
    target = output_target(path)
    if target.exists() and not target.is_file():
        if target.is_dir():
            raise UserError(f"{path}: is a folder; name a file to write")
        with open(target, "wb") as fh:
            fh.write(data)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with named(path), os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        mode = target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def named(path: str | Path) -> Iterator[None]:
    """A write error that names no file (a full disk, a file size limit) names `path`."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write text atomically (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write one JSON document atomically, pretty-printed."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Write a whole JSON Lines file atomically."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def append_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Append rows to a journal as one write + fsync, safe beside other writers of the same file.

    Every writer holds the file's lock while it writes, so an unfinished last line found under the lock
    was left by a writer that died: it is cut before the new rows go in (never a line another process is
    still writing). Readers take finished lines only (`iter_jsonl(..., finished_only=True)`)."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    if not data:
        return
    with _journal(path) as fd, named(path):
        _cut_torn_tail(fd)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)


def repair_jsonl(path: Path) -> int:
    """Cut an unterminated last line left by a killed writer (under the journal's lock, so never a line
    being written); return the bytes removed."""
    if not Path(path).exists():
        return 0
    with _journal(path) as fd, named(path):
        return _cut_torn_tail(fd)


@contextlib.contextmanager
def _journal(path: Path) -> Iterator[int]:
    """The journal open for appending, held against other writers (the lock goes with the process)."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _cut_torn_tail(fd: int, chunk: int = 1 << 16) -> int:
    """Truncate an open journal after its last newline; return the bytes cut."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        start = max(0, end - chunk)
        found = os.pread(fd, end - start, start).rfind(b"\n")
        if found >= 0:
            end = start + found + 1
            break
        end = start
    if end < size:
        os.ftruncate(fd, end)
    return size - end


def iter_jsonl(path: Path, finished_only: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; a bad line is a one-line UserError naming it.

    `finished_only` leaves out an unterminated last line (one another process is still writing), so a
    reader never has to modify the file.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a file")
    data = path.read_bytes()
    if finished_only:
        data = data[: data.rfind(b"\n") + 1]
    for lineno, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{where(path, lineno)}: not UTF-8 text") from None
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where(path, lineno)}: malformed JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{where(path, lineno)}: expected a JSON object per line")
        yield lineno, obj


def read_text(path: str | Path) -> str:
    """A whole UTF-8 text file; a folder, a missing file or bytes that are not UTF-8 are one line naming it
    (and the line of the first bad byte)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{where(path, line)}: not UTF-8 text") from None


def read_json(path: str | Path) -> object:
    """A JSON file's value; malformed JSON is one line naming the file and line."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"{where(Path(path), exc.lineno)}: malformed JSON ({exc.msg})") from None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(*parts: str) -> str:
    """Hex sha256 of text parts, each separated by a NUL so boundaries count."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def folder_fingerprint(
    folder: Path, patterns: tuple[str, ...] = ("*.json", "*.safetensors", "*.bin", "*.txt", "*.model")
) -> str:
    """A content hash of a model folder's files (names, sizes, bytes): the same model anywhere gives the same
    value, a moved or reinstalled copy included."""
    files = sorted({p for pattern in patterns for p in Path(folder).glob(pattern) if p.is_file()})
    return sha256_text(*(f"{p.name}:{p.stat().st_size}:{sha256_file(p)}" for p in files))


@contextlib.contextmanager
def exclusive(folder: Path, what: str, wait: bool = False, name: str = ".lock") -> Iterator[None]:
    """Hold `folder/<name>` (`.lock` by default) for one writer at a time. The lock file names its
    owner's pid; another process is refused with one line while the owner lives (or, with `wait`,
    waits its turn), and the kernel frees the lock the moment the owner dies (killed included). The
    refusal names the owner and what it is doing, not the process asking."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise UserError(
                f"{folder} is in use by {owner}; wait for it to finish, or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({what})".encode(), 0)
        yield
    finally:
        os.close(fd)


def frame_digest(frame: pl.DataFrame, columns: Sequence[str]) -> str:
    """A content hash of the columns of a loaded table (what a run read, whatever its file format)."""
    return sha256_text(*(f"{c}\1" + "\0".join(str(v) for v in frame[c].to_list()) for c in columns))
