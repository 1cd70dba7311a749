"""The on-disk judgment cache: one JSON Lines journal per judge, keyed by judge + prompt hash.

Each finished reply is appended (one write + fsync) the moment it arrives, so a killed run loses
nothing finished and a re-run asks for nothing already answered. A torn last line left by a kill
is cut off when the journal is next opened. Failed requests are never cached (a re-run retries).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..files import append_jsonl, cache_dir, iter_jsonl, repair_jsonl, sha256_text

ORDERS = ("system_first", "baseline_first")


@dataclass(frozen=True)
class Comparison:
    """One pairwise judgment to make: a system answer and a baseline answer in a given order."""

    query_id: str
    sample: int
    order: str  # system_first: the system is Assistant 1 (the paper's order); baseline_first: swapped
    question: str
    system: str
    baseline: str
    reference: str | None = None

    @property
    def answer_1(self) -> str:
        """The answer shown first."""
        return self.system if self.order == "system_first" else self.baseline

    @property
    def answer_2(self) -> str:
        """The answer shown second."""
        return self.baseline if self.order == "system_first" else self.system


@dataclass
class Reply:
    """A judge's reply to one comparison: raw text and (Assistant 1, Assistant 2) scores if readable."""

    raw: str
    scores: tuple[float, float] | None
    failed: bool = False  # the request itself failed (not cached; counted as invalid)


@dataclass
class JudgmentCache:
    """Replies of one judge, read from and appended to `<root>/judgments/<judge key>.jsonl`."""

    judge_key: str
    root: Path | None = None
    _replies: dict[str, Reply] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root) if self.root is not None else cache_dir()
        if self.path.exists():
            repair_jsonl(self.path)
            for _, obj in iter_jsonl(self.path):
                scores = obj.get("scores")
                self._replies[obj["key"]] = Reply(obj["raw"], tuple(scores) if scores else None)

    @property
    def path(self) -> Path:
        """The journal file of this judge."""
        return self.root / "judgments" / f"{self.judge_key}.jsonl"

    def key(self, prompt_hash: str) -> str:
        """The cache key of one comparison: judge + prompt hash."""
        return sha256_text(self.judge_key, prompt_hash)[:32]

    def get(self, key: str) -> Reply | None:
        """The cached reply for a key, if any."""
        return self._replies.get(key)

    def put(self, key: str, reply: Reply) -> None:
        """Record a reply durably (failed requests are kept in memory only)."""
        if reply.failed:
            return
        self._replies[key] = reply
        append_jsonl(
            self.path,
            [{"key": key, "raw": reply.raw, "scores": list(reply.scores) if reply.scores else None}],
        )

    def __len__(self) -> int:
        return len(self._replies)
