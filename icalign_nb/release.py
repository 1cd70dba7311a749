"""The paper release as inputs: its files (a local folder or pinned fetches) and its comparisons."""

from __future__ import annotations

from pathlib import Path

from .data import REMOTE_FILES, fetch, load_baseline, load_release_outputs
from .errors import UserError
from .judge import build_comparisons
from .judges.cache import Comparison
from .judgments import release_names

RELEASE_PREFIX = "paper_release/"


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


def release_comparisons(
    judgment_file: Path,
    reference: str | None,
    release: str | Path | None = None,
    data_dir: str | Path | None = None,
) -> list[Comparison]:
    """Comparisons (system first) for the items of one release judgment file, from the released answers."""
    system, baseline = release_names(judgment_file)
    outputs = load_release_outputs(release_file(outputs_name(system), release, data_dir))
    base = load_baseline(release_file(f"{baseline}_results.jsonl", release, data_dir))
    ref = load_baseline(release_file(f"{reference}_results.jsonl", release, data_dir)) if reference else None
    rows = [
        {"query_id": q, "sample": s, "query": p, "response": r, "_loc": f"{judgment_file}"}
        for q, s, p, r in outputs.iter_rows()
    ]
    from .data import load_release_judgments

    judged = {(q, s) for q, s, _ in load_release_judgments(judgment_file).iter_rows()}
    rows = [r for r in rows if (r["query_id"], r["sample"]) in judged]
    return build_comparisons(rows, base, ref)
