"""The paper's release: its files (a release folder, the data directory or pinned fetches) and readers.

Release judgment files are named `<system>_vs_<baseline>_autoeval.jsonl`; outputs are
`<system>_outputs_temp0.7.jsonl`; baseline answers `<baseline>_results.jsonl`. Queries are the
300 LIMA test prompts in file order, with ids `lima-000` … `lima-299`.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from ..cache import cache_root
from ..errors import UserError
from .fetch import REMOTE_FILES, data_root, fetch
from .records import read_records, text_field

RELEASE_PREFIX = "paper_release/"
_JUDGMENT_NAME = re.compile(r"^(?P<system>.+)_vs_(?P<baseline>.+)_autoeval\.jsonl$")


def release_names(path: str | Path) -> tuple[str, str]:
    """(system, baseline) from a release judgment file name."""
    m = _JUDGMENT_NAME.match(Path(path).name)
    if not m:
        raise UserError(f"{path}: a release judgment file is named <system>_vs_<baseline>_autoeval.jsonl")
    return m["system"], m["baseline"]


def locate_release(release_dir: str | Path | None = None, data_dir: str | Path | None = None) -> Path | None:
    """The release folder if it is on this machine (argument, data dir, or an earlier fetch), else None."""
    candidates = [Path(release_dir)] if release_dir else []
    root = data_root(data_dir)
    if root is not None:
        candidates.append(root / "paper_release")
    candidates.append(cache_root() / "data" / "paper_release")
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*_vs_*_autoeval.jsonl")):
            return folder
    return None


def release_judgment_files(
    release: str | Path | None = None, data_dir: str | Path | None = None
) -> list[Path]:
    """Every `*_vs_*_autoeval.jsonl` of a release folder, else the pinned release files (fetched)."""
    if release is not None:
        folder = Path(release)
        if not folder.is_dir():
            raise UserError(f"--release {folder}: not a folder")
        files = sorted(folder.glob("*_vs_*_autoeval.jsonl"))
        if not files:
            raise UserError(f"{folder}: no *_vs_*_autoeval.jsonl judgment files")
        return files
    names = sorted(r for r in REMOTE_FILES if r.startswith(RELEASE_PREFIX) and r.endswith("_autoeval.jsonl"))
    return [fetch(name, data_dir) for name in names]


def release_file(name: str, release: str | Path | None = None, data_dir: str | Path | None = None) -> Path:
    """One release file by name, from the folder given or fetched (pinned)."""
    if release is not None:
        path = Path(release) / name
        if not path.exists():
            raise UserError(f"{path}: not found in the release folder")
        return path
    return fetch(RELEASE_PREFIX + name, data_dir)


def outputs_name(system: str) -> str:
    """File name of a release system's sampled outputs."""
    return f"{system}_outputs_temp0.7.jsonl"


def load_release_outputs(path: str | Path) -> pl.DataFrame:
    """Released system outputs (`prompt`, `response_list`) as one row per (query, sample)."""
    rows = []
    for i, (loc, obj) in enumerate(read_records(Path(path))):
        prompt = text_field(loc, obj, "prompt")
        answers = obj.get("response_list")
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise UserError(
                f"{loc}: field 'response_list' must be a list of strings "
                f"(fields found: {', '.join(sorted(obj))})"
            )
        rows += [
            {"query_id": f"lima-{i:03d}", "sample": s, "prompt": prompt, "response": a}
            for s, a in enumerate(answers)
        ]
    return pl.DataFrame(
        rows, schema={"query_id": pl.String, "sample": pl.Int64, "prompt": pl.String, "response": pl.String}
    )


def load_release_judgments(path: str | Path) -> pl.DataFrame:
    """Released judge replies (`autoeval_text_list`) as one row per (query, sample)."""
    rows = []
    for i, (loc, obj) in enumerate(read_records(Path(path))):
        replies = obj.get("autoeval_text_list")
        if not isinstance(replies, list) or not all(isinstance(r, str) for r in replies):
            raise UserError(
                f"{loc}: field 'autoeval_text_list' must be a list of strings "
                f"(fields found: {', '.join(sorted(obj))})"
            )
        rows += [{"query_id": f"lima-{i:03d}", "sample": s, "raw": r} for s, r in enumerate(replies)]
    return pl.DataFrame(rows, schema={"query_id": pl.String, "sample": pl.Int64, "raw": pl.String})
