"""The paper's release: its files (a release folder, the data directory or pinned fetches) and readers.

Release judgment files are named `<system>_vs_<baseline>_autoeval.jsonl`; outputs are
`<system>_outputs_temp0.7.jsonl`; baseline answers `<baseline>_results.jsonl`. Queries are the
300 LIMA test prompts in file order, with ids `lima-000` … `lima-299`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from ..cache import cache_root
from ..errors import UserError
from .fetch import REMOTE_FILES, data_root, fetch
from .pins import check_pin
from .records import read_records, text_field

RELEASE_PREFIX = "paper_release/"


@dataclass(frozen=True)
class ReleaseSystem:
    """A system of the release, keyed by the stem its files share; the label is only ever shown, and the
    win rates are the ones the paper reports (a fact of the paper, not computed here)."""

    id: str
    label: str
    reported: dict[str, float] = field(default_factory=dict)  # baseline id -> reported win rate


# Source of `reported`: Han (2023), "In-Context Alignment: Chat with Vanilla Language Models Before
# Fine-Tuning", arXiv:2308.04275 (GPT-4-0613 judge, LIMA test, 300 prompts; 5 samples per prompt vs
# text-davinci-003, 1 vs ChatGPT). Win rate = wins / comparisons.
REPORTED_SOURCE = "Han (2023), arXiv:2308.04275, GPT-4-judged win rates on the LIMA test prompts"
RELEASE_SYSTEMS: dict[str, ReleaseSystem] = {
    s.id: s
    for s in [
        ReleaseSystem("llama2base-13B_zeroshot", "Llama-2-13B zero-shot", {"davinci003": 0.114}),
        ReleaseSystem(
            "llama2-13B_icl-oasstgpt",
            "Llama-2-13B in-context (retrieved)",
            {"davinci003": 0.784, "chatgpt": 0.163},
        ),
        ReleaseSystem(
            "llama2-13B_icl-random-oasstgpt",
            "Llama-2-13B in-context (random)",
            {"davinci003": 0.629, "chatgpt": 0.107},
        ),
        ReleaseSystem("llama2chat-13B", "Llama-2-chat-13B", {"davinci003": 0.841, "chatgpt": 0.307}),
        ReleaseSystem("llama2-70B_icl-oasstgpt", "Llama-2-70B in-context (retrieved)", {"davinci003": 0.885}),
        ReleaseSystem("llama1-13B_icl-oasstgpt", "Llama-1-13B in-context (retrieved)", {"davinci003": 0.367}),
        ReleaseSystem("llama2chat-7B", "Llama-2-chat-7B", {"davinci003": 0.753}),
        ReleaseSystem("guanaco-7B", "Guanaco-7B", {"davinci003": 0.701}),
        ReleaseSystem("guanaco-13B", "Guanaco-13B", {"davinci003": 0.769}),
    ]
}
# The release's baselines, by the id its file names use.
RELEASE_BASELINES = {"davinci003": "text-davinci-003", "chatgpt": "ChatGPT"}


def release_label(name: str) -> str:
    """What people read for a release system or baseline id (an unknown id is shown as it is)."""
    system = RELEASE_SYSTEMS.get(name)
    return system.label if system is not None else RELEASE_BASELINES.get(name, name)


def release_order(name: str) -> int:
    """A release system's place in tables and figures: the paper's order, unknown systems last."""
    order = list(RELEASE_SYSTEMS)
    return order.index(name) if name in order else len(order)


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
    """Every `*_vs_*_autoeval.jsonl` of a release folder (the one given, else the data directory's
    `paper_release/`): whichever systems it holds; without either, every pinned release judgment file
    (fetched)."""
    root = data_root(data_dir)
    if release is None and root is not None:
        release = root / "paper_release"
    if release is not None:
        folder = Path(release)
        if not folder.is_dir():
            raise UserError(f"release folder {folder}: not a folder")
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
        return check_pin(path)
    return fetch(RELEASE_PREFIX + name, data_dir)


def beside(path: str | Path, name: str, data_dir: str | Path | None = None) -> Path:
    """A release file kept beside another one (a folder holding the release), else the pinned one."""
    folder = Path(path).expanduser().parent
    return release_file(name, folder if (folder / name).exists() else None, data_dir)


def outputs_name(system: str) -> str:
    """File name of a release system's sampled outputs."""
    return f"{system}_outputs_temp0.7.jsonl"


def load_release_outputs(path: str | Path) -> pl.DataFrame:
    """Released system outputs (`prompt`, `response_list`) as one row per (query, sample); a file named
    like a pinned one must match its pin."""
    rows = []
    for i, (loc, obj) in enumerate(read_records(check_pin(path))):
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
    """Released judge replies (`autoeval_text_list`) as one row per (query, sample); a file named like a
    pinned one must match its pin."""
    rows = []
    for i, (loc, obj) in enumerate(read_records(check_pin(path))):
        replies = obj.get("autoeval_text_list")
        if not isinstance(replies, list) or not all(isinstance(r, str) for r in replies):
            raise UserError(
                f"{loc}: field 'autoeval_text_list' must be a list of strings "
                f"(fields found: {', '.join(sorted(obj))})"
            )
        rows += [{"query_id": f"lima-{i:03d}", "sample": s, "raw": r} for s, r in enumerate(replies)]
    return pl.DataFrame(rows, schema={"query_id": pl.String, "sample": pl.Int64, "raw": pl.String})
