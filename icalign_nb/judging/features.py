"""What the fitted judge looks at: interpretable features of one answer, and their pairwise differences.

Each answer to a question is described by the features below (`FEATURES`), computed from its text,
the question's, a reference answer's when there is one, and MiniLM embeddings of the three (through
the package's per-text embedding cache). The judge compares two answers through the *differences*
of their features (first answer minus second), so swapping the answers negates every input.
Features that need a reference are left out when a comparison has none.

Bump `FEATURES_VERSION` whenever a definition changes: coefficients fitted to other definitions
are refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..retrieval.embeddings import TextEmbeddingCache

FEATURES_VERSION = 1
ENCODER = "minilm"  # the sentence encoder of the cosine features
ENCODER_MAX_TOKENS = 256  # tokens of each text embedded (as the embedding judge: one shared cache)
# Below this answer-question cosine an answer reads as off topic: about the 2nd percentile of the fit
# data's real answers (GPT-4's verdicts), where another question's answer sits near 0.
RELEVANCE_FLOOR = 0.4


@dataclass(frozen=True)
class Feature:
    """One per-answer feature: its name, what it measures, whether it needs a reference answer."""

    name: str
    what: str
    reference: bool = False


FEATURES: tuple[Feature, ...] = (
    Feature("log_words", "length: log(1 + words); an empty answer is its extreme, 0"),
    Feature("repeated_trigrams", "loops: share of the answer's word trigrams that repeat an earlier one"),
    Feature("repeated_lines", "loops: share of its lines (2+ words) that repeat an earlier line"),
    Feature("new_turn", "runaway continuation: a line opening a new turn ('Question:', 'Human:', ...) (1/0)"),
    Feature(
        "unfinished", "cut off: the last line is prose (6+ words, not a list item) ending mid-sentence (1/0)"
    ),
    Feature("markup", "web-dump noise: share of lines with LaTeX/forum markup (\\begin, Comment:, URLs)"),
    Feature("question_copy", "echo: share of the answer's word trigrams found in the question"),
    Feature("question_words", "relevance: share of the question's content words used in the answer"),
    Feature("question_cosine", "relevance: MiniLM cosine of the answer and the question"),
    Feature("irrelevance", f"off topic: how far that cosine falls below {RELEVANCE_FLOOR} (0 above it)"),
    Feature("list_lines", "structure: log(1 + list-item lines)"),
    Feature("lines", "structure: log(1 + non-empty lines)"),
    Feature("refusal", "declines or lectures: 'I'm sorry', 'as an AI', 'I cannot', 'I must point out' (1/0)"),
    Feature("reference_cosine", "agreement: MiniLM cosine of the answer and the reference", reference=True),
    Feature("reference_recall", "agreement: share of the reference's content words used", reference=True),
    Feature("reference_precision", "agreement: share of its content words in the reference", reference=True),
    Feature(
        "reference_length_gap",
        "length fit: |log(1 + words) - the reference's log(1 + words)|",
        reference=True,
    ),
)
FEATURE_NAMES = tuple(f.name for f in FEATURES)
# What a feature's difference says of the first answer, in words people read: (its value the higher of
# the two, its value the lower). Words only: changing them changes no verdict.
IN_WORDS: dict[str, tuple[str, str]] = {
    "log_words": ("longer", "shorter"),
    "repeated_trigrams": ("more repeated phrases", "fewer repeated phrases"),
    "repeated_lines": ("more repeated lines", "fewer repeated lines"),
    "new_turn": ("runs on into a new question", "stays on its question (the other runs on)"),
    "unfinished": ("cut off mid-sentence", "finished (the other is cut off)"),
    "markup": ("more web markup", "less web markup"),
    "question_copy": ("echoes the question more", "echoes the question less"),
    "question_words": ("uses more of the question's words", "uses fewer of the question's words"),
    "question_cosine": ("closer in meaning to the question", "further in meaning from the question"),
    "irrelevance": ("more off topic", "less off topic"),
    "list_lines": ("more list items", "fewer list items"),
    "lines": ("more lines", "fewer lines"),
    "refusal": ("refuses or lectures", "answers (the other refuses)"),
    "reference_cosine": ("closer to the reference", "further from the reference"),
    "reference_recall": ("covers more of the reference", "covers less of the reference"),
    "reference_precision": ("more of its words in the reference", "fewer of its words in the reference"),
    "reference_length_gap": ("length further from the reference's", "length closer to the reference's"),
}
REFERENCE_FREE = tuple(f.name for f in FEATURES if not f.reference)

_WORD = re.compile(r"\w+")
_LIST_LINE = re.compile(r"^\s*(?:[-*\u2022+]|\d{1,3}[.)]|[a-zA-Z][.)])\s+\S")
_NEW_TURN = re.compile(
    r"^\s*(?:#{1,4}\s*)?(?:question|instruction|human|user|input|###\s*response)\s*:", re.IGNORECASE
)
_MARKUP = re.compile(
    r"\\(?:begin|end|em|section|code|item|textbf|emph)\b|^\s*(?:comment|edit|update)\s*:|https?://",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\b(?:i'?m sorry|i am sorry|i apologi[sz]e|as an ai\b|as a (?:responsible|language model)|i cannot"
    r"|i can'?t (?:help|provide|assist)|i(?:'m| am) (?:not able|unable) to|i must (?:point out|inform))",
    re.IGNORECASE,
)
# A last line ending in one of these ends a sentence, a quotation, a bracket or a code block.
_FINISHED = set(".!?\"')]}`*:;>|\u201d\u2019")
_PROSE_WORDS = 6  # a last line this long, not a list item, reads as prose


def stop_words() -> frozenset[str]:
    """English stop words (scikit-learn's list)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return _WORD.findall(text.lower())


def _trigrams(tokens: Sequence[str]) -> list[tuple[str, str, str]]:
    return list(zip(tokens, tokens[1:], tokens[2:], strict=False))


def _share_in(part: Sequence, whole: set) -> float:
    return sum(1 for x in part if x in whole) / len(part) if part else 0.0


@dataclass
class TextFeatures:
    """The text-only features of answers, with the question's and reference's word sets memoised."""

    _stop: frozenset[str] = field(default_factory=stop_words, init=False, repr=False)
    _memo: dict[str, tuple[set, set, int]] = field(default_factory=dict, init=False, repr=False)

    def _content(self, text: str) -> tuple[set, set, int]:
        """(content words, word trigrams, word count) of a question or reference."""
        if text not in self._memo:
            tokens = words(text)
            content = {w for w in tokens if w not in self._stop}
            self._memo[text] = (content, set(_trigrams(tokens)), len(tokens))
        return self._memo[text]

    def answer(self, question: str, answer: str, reference: str | None) -> dict[str, float]:
        """Every text-only feature of one answer (reference features NaN without a reference)."""
        tokens = words(answer)
        grams = _trigrams(tokens)
        lines = [ln.strip() for ln in answer.splitlines() if ln.strip()]
        long_lines = [ln for ln in lines if len(ln.split()) >= 2]
        content = [w for w in tokens if w not in self._stop]
        q_words, q_grams, _ = self._content(question)
        stripped = answer.rstrip()
        out = {
            "log_words": math.log1p(len(tokens)),
            "repeated_trigrams": 1.0 - len(set(grams)) / len(grams) if grams else 0.0,
            "repeated_lines": 1.0 - len(set(long_lines)) / len(long_lines) if long_lines else 0.0,
            "new_turn": float(any(_NEW_TURN.match(ln) for ln in lines)),
            "unfinished": float(_cut(stripped, lines)),
            "markup": sum(1 for ln in lines if _MARKUP.search(ln)) / len(lines) if lines else 0.0,
            "question_copy": _share_in(grams, q_grams),
            "question_words": _share_in(sorted(q_words), set(content)),
            "list_lines": math.log1p(sum(1 for ln in lines if _LIST_LINE.match(ln))),
            "lines": math.log1p(len(lines)),
            "refusal": float(bool(_REFUSAL.search(answer))),
        }
        if reference is None:
            out.update(reference_recall=math.nan, reference_precision=math.nan, reference_length_gap=math.nan)
        else:
            r_words, _, r_count = self._content(reference)
            out["reference_recall"] = _share_in(sorted(r_words), set(content))
            out["reference_precision"] = _share_in(content, r_words)
            out["reference_length_gap"] = abs(out["log_words"] - math.log1p(r_count))
        return out


def _cut(stripped: str, lines: list[str]) -> bool:
    """The answer stops mid-sentence: its last line is prose whose last character ends nothing."""
    if not stripped or stripped[-1] in _FINISHED:
        return False
    return len(lines[-1].split()) >= _PROSE_WORDS and not _LIST_LINE.match(lines[-1])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two equally shaped embedding matrices."""
    na = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(na, 1e-12)


@dataclass(frozen=True)
class Pair:
    """Two answers to one question (and a reference answer, if any) to compare."""

    question: str
    first: str
    second: str
    reference: str | None = None


Embed = Callable[[list[str]], np.ndarray]  # texts -> one embedding row each


def embedder(encoder: str = ENCODER) -> TextEmbeddingCache:
    """The per-text embedding cache the cosine features are read through."""
    from ..retrieval.embeddings import TextEmbeddingCache
    from ..retrieval.encoders import Encoder

    return TextEmbeddingCache(Encoder(name=encoder, max_length=ENCODER_MAX_TOKENS))


def answer_matrix(
    questions: Sequence[str],
    answers: Sequence[str],
    references: Sequence[str | None],
    embed: Embed,
    text: TextFeatures | None = None,
) -> np.ndarray:
    """(n, len(FEATURES)) features of answers; reference features are NaN where there is no reference.

    `embed` maps a list of texts to embedding rows (a `TextEmbeddingCache`'s `embed`, or any callable)."""
    text = text or TextFeatures()
    n = len(answers)
    out = np.full((n, len(FEATURES)), np.nan)
    col = {name: i for i, name in enumerate(FEATURE_NAMES)}
    for i, (q, a, r) in enumerate(zip(questions, answers, references, strict=True)):
        for name, value in text.answer(q, a, r).items():
            out[i, col[name]] = value
    if n:
        unique = list(dict.fromkeys([*questions, *answers, *(r for r in references if r is not None)]))
        vectors = embed(unique)
        row = {t: i for i, t in enumerate(unique)}
        a_vec = vectors[[row[a] for a in answers]]
        relevance = cosines(a_vec, vectors[[row[q] for q in questions]])
        out[:, col["question_cosine"]] = relevance
        out[:, col["irrelevance"]] = np.maximum(0.0, RELEVANCE_FLOOR - relevance)
        has_ref = np.array([r is not None for r in references])
        if has_ref.any():
            refs = [r for r in references if r is not None]
            out[has_ref, col["reference_cosine"]] = cosines(a_vec[has_ref], vectors[[row[r] for r in refs]])
    return out


def pair_matrix(pairs: Sequence[Pair], embed: Embed, text: TextFeatures | None = None) -> np.ndarray:
    """(n, len(FEATURES)) feature differences, first answer minus second (NaN: no reference)."""
    text = text or TextFeatures()
    questions = [p.question for p in pairs] * 2
    answers = [p.first for p in pairs] + [p.second for p in pairs]
    references = [p.reference for p in pairs] * 2
    both = answer_matrix(questions, answers, references, embed, text)
    return both[: len(pairs)] - both[len(pairs) :]
