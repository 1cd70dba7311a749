"""The paper release's recorded GPT-4 replies as a judge: a reply is given only for the comparison it
judged — the release's question, the release system's answer and the baseline's, the system first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ...data.loaders import load_baseline
from ...data.release import beside, load_release_judgments, load_release_outputs, outputs_name, release_names
from ...errors import UserError
from ...files import sha256_file, sha256_text
from ..comparisons import ORDERS, Comparison, Reply
from ..parse import parse_scores
from ..spec import JudgeSpec

ORDER = ORDERS[0]  # the release's order: the system is Assistant 1
# (question, baseline answer, system answer) -> the (sample, reply) pairs recorded for it
Recorded = dict[tuple[str, str, str], list[tuple[int, str]]]


@dataclass
class RecordedJudge:
    """Replies recorded in a release `<system>_vs_<baseline>_autoeval.jsonl`, checked against the texts they
    judged (the release's outputs and baseline answers, beside the file or pinned): any other comparison —
    another answer, another baseline, the swapped order — is refused, never given a reply."""

    spec: JudgeSpec
    data_dir: str | None = None
    _recorded: Recorded = field(default_factory=dict, init=False, repr=False)
    _questions: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    _answers: set[tuple[str, str]] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        path = Path(self.spec.model).expanduser()
        if not path.is_file():
            raise UserError(f"recorded judge: {path}: not found")
        self.system, self.baseline = release_names(path)
        self.digest = sha256_file(path)
        outputs = load_release_outputs(beside(path, outputs_name(self.system), self.data_dir))
        base = load_baseline(beside(path, f"{self.baseline}_results.jsonl", self.data_dir))
        base_by_prompt = {p.strip(): r for p, r in zip(base["prompt"], base["response"], strict=True)}
        replies = {(q, s): r for q, s, r in load_release_judgments(path).iter_rows()}
        for qid, sample, prompt, answer in outputs.iter_rows():
            raw = replies.get((qid, sample))
            question = prompt.strip()
            self._questions[question] = base_by_prompt.get(question, "")
            self._answers.add((question, answer))
            if raw is not None and question in base_by_prompt:
                key = (question, base_by_prompt[question], answer)
                self._recorded.setdefault(key, []).append((sample, raw))

    def prompt_hash(self, c: Comparison) -> str:
        """The recorded file's content and every text of the comparison (a reply belongs to these only)."""
        return sha256_text(self.digest, c.order, c.question.strip(), c.baseline, c.system)

    def _reply(self, c: Comparison) -> str | None:
        found = self._recorded.get((c.question.strip(), c.baseline, c.system)) if c.order == ORDER else None
        if not found:
            return None
        return next((raw for sample, raw in found if sample == c.sample), found[0][1])

    def _why(self, c: Comparison) -> str:
        """Why a comparison has no recorded reply."""
        if c.order != ORDER:
            return "the release recorded the system-first order only (judge without swapping)"
        question = c.question.strip()
        if question not in self._questions:
            return "its question is not one of the release's"
        if c.baseline != self._questions[question]:
            return f"its baseline answer is not the release's {self.baseline} answer"
        if (question, c.system) in self._answers:
            return f"the release recorded no reply for that answer against {self.baseline}"
        return f"its answer is not one of the release's {self.system} answers to that question"

    def judge(self, items: Sequence[Comparison], done: Callable[[int, Reply], None]) -> None:
        """The recorded reply of every item, or (before any reply is given) one line naming what has none."""
        replies = [self._reply(c) for c in items]
        missing = [c for c, raw in zip(items, replies, strict=True) if raw is None]
        if missing:
            first = missing[0]
            raise UserError(
                f"recorded judge {Path(self.spec.model).name}: {len(missing)} of {len(items)} comparison(s) "
                f"were never judged by it (first: query {first.query_id} sample {first.sample}: "
                f"{self._why(first)}); it gives verdicts only on the release's own {self.system} answers "
                f"against {self.baseline}"
            )
        for i, raw in enumerate(replies):
            done(i, Reply(raw, parse_scores(raw)))
