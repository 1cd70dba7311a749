"""The paper release's recorded GPT-4 replies as a judge, looked up by (query id, sample)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ...data.release import load_release_judgments
from ...files import sha256_text
from ..comparisons import Comparison, Reply
from ..parse import parse_scores
from ..spec import JudgeSpec


@dataclass
class RecordedJudge:
    """Replies recorded in a release `*_autoeval.jsonl`; swapped orders and missing items have none."""

    spec: JudgeSpec
    _replies: dict[tuple[str, int], str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        table = load_release_judgments(self.spec.model)
        self._replies = {(q, s): r for q, s, r in table.iter_rows()}

    def prompt_hash(self, c: Comparison) -> str:
        """Recorded replies are identified by position in the release, not by prompt."""
        return sha256_text(c.query_id, str(c.sample), c.order)

    def judge(self, items: Sequence[Comparison], done: Callable[[int, Reply], None]) -> None:
        """Look replies up; an item without a recorded reply is invalid."""
        for i, c in enumerate(items):
            raw = self._replies.get((c.query_id, c.sample)) if c.order == "system_first" else None
            if raw is None:
                done(i, Reply(f"[no recorded judgment for {c.query_id} sample {c.sample} {c.order}]", None))
            else:
                done(i, Reply(raw, parse_scores(raw)))
