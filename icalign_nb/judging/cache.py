"""The on-disk judgment cache: one JSON Lines journal per judge, keyed by judge + prompt hash.

Each finished reply is appended (one write + fsync) the moment it arrives, so a killed run loses
nothing finished and a re-run asks for nothing already answered. Several judges may share a journal:
each appends under the file's lock, a torn last line left by a killed one is cut by the next append
(never a line still being written), and readers take finished lines only. Failed requests are never
cached (a re-run retries).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..cache import cache_key, cache_path
from ..errors import UserError, where
from ..files import append_jsonl, iter_jsonl
from .comparisons import Reply


@dataclass
class JudgmentCache:
    """Replies of one judge, read from and appended to its journal in the cache."""

    judge_key: str
    _replies: dict[str, Reply] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.path.exists():  # other judges may be appending: finished lines only, nothing cut here
            for lineno, obj in iter_jsonl(self.path, finished_only=True):
                key, raw, scores = obj.get("key"), obj.get("raw"), obj.get("scores")
                if not isinstance(key, str) or not isinstance(raw, str):
                    raise UserError(
                        f"{where(self.path, lineno)}: not a cached judgment (needs 'key' and 'raw')"
                    )
                self._replies[key] = Reply(
                    raw, tuple(scores) if isinstance(scores, list) and len(scores) == 2 else None
                )

    @property
    def path(self) -> Path:
        """The journal file of this judge."""
        return cache_path("judgments", self.judge_key, suffix=".jsonl")

    def key(self, prompt_hash: str) -> str:
        """The cache key of one comparison: judge + prompt hash."""
        return cache_key(self.judge_key, prompt_hash)

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
