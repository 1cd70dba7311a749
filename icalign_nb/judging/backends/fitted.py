"""The fitted judge: interpretable answer features, a logistic model fitted to GPT-4's verdicts.

Each comparison's features (`judging.features`) are computed for both answers, embeddings read
through the per-text cache; P(Assistant 1 wins) comes from the model with reference features
when the comparison has a reference answer, else from the reference-free one (`judging.fit`).
The reply's scores are (P(1 wins), P(2 wins)), which sum to 1; the verdict's draw margin applies to
their difference. The raw reply names the three features that moved the verdict most.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ...files import sha256_text
from ..comparisons import Comparison, Reply
from ..features import FEATURES, IN_WORDS, Embed, Pair, embedder, pair_matrix
from ..fit import Coefficients, Models, read_coefficients
from ..spec import JudgeSpec, coefficients_path

TOP_FEATURES = 3  # features named in each reply
MOVED_BY = "log-odds moved by "


@dataclass
class FittedJudge:
    """P(Assistant 1 wins) from the fitted models, over answer feature differences."""

    spec: JudgeSpec
    coefficients: Coefficients = field(init=False)
    _embed: Embed | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.coefficients = read_coefficients(coefficients_path(self.spec.model))

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of texts through the per-text cache (encoder loaded on the first miss)."""
        if self._embed is None:
            self._embed = embedder().embed
        return self._embed(texts)

    def prompt_hash(self, c: Comparison) -> str:
        """Hash of everything the features read: question, both answers in order, reference."""
        return sha256_text(c.question, c.answer_1, c.answer_2, c.reference or "")

    def judge(self, items: Sequence[Comparison], done: Callable[[int, Reply], None]) -> None:
        """Score all comparisons in one pass; each reply says P(1 wins), P(2 wins) and why."""
        if not items:
            return
        diffs = pair_matrix(
            [Pair(c.question, c.answer_1, c.answer_2, c.reference) for c in items], self.embed
        )
        has_ref = np.array([c.reference is not None for c in items])
        models = self.coefficients.models
        p = models.prob(diffs, has_ref)
        for i in range(len(items)):
            model = models.model(bool(has_ref[i]))
            done(
                i, Reply(reply_text(p[i], model.features, model.contributions(diffs[i])[0]), (p[i], 1 - p[i]))
            )


def reply_text(p: float, features: Sequence[str], contributions: np.ndarray) -> str:
    """`p1 p2` on the first line, then the features that moved the log-odds most (toward Assistant 1 +)."""
    order = np.argsort(-np.abs(contributions))[:TOP_FEATURES]
    moved = ", ".join(f"{features[j]} {contributions[j]:+.2f}" for j in order)
    return (
        f"{p:.4f} {1 - p:.4f}\nP(Assistant 1 wins), P(Assistant 2 wins) from answer features; "
        f"{MOVED_BY}{moved}"
    )


def moved_by(raw: str) -> list[tuple[str, float]]:
    """The features a fitted judge's reply names as moving its verdict most, with their log-odds shares
    (toward Assistant 1 when positive); none for another judge's reply."""
    _, found, listed = raw.partition(MOVED_BY)
    if not found:
        return []
    pairs = [item.rsplit(" ", 1) for item in listed.strip().split(", ")]
    return [(name, float(value)) for name, value in pairs]


def moved_in_words(raw: str, models: Models) -> list[tuple[str, float]]:
    """The features a fitted judge's reply names as moving its verdict, each said of Assistant 1's answer
    ("longer", "fewer repeated lines") with its log-odds share toward it: the difference's direction is
    the share's sign over the feature's weight's (the feature's topic, e.g. "length", when the two models
    weigh it in opposite directions or it moved nothing). None for another judge's reply."""
    found = []
    for name, share in moved_by(raw):
        direction = _weight_sign(models, name) * np.sign(share)
        more, less = IN_WORDS.get(name, (name, name))
        found.append((more if direction > 0 else less if direction < 0 else _topic(name), share))
    return found


def _weight_sign(models: Models, name: str) -> int:
    """The sign of a feature's weight in the models that read it (0 when they disagree or it has none)."""
    signs = {
        int(np.sign(m.coef[m.features.index(name)]))
        for m in (models.with_reference, models.without_reference)
        if name in m.features
    }
    return signs.pop() if len(signs) == 1 else 0


def _topic(name: str) -> str:
    """A feature's topic, the start of its description ("length", "loops")."""
    what = next((f.what for f in FEATURES if f.name == name), name)
    return what.partition(":")[0]
