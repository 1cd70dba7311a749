"""Degenerate answers built from sane ones: what a judge must always rank below the sane answer.

Kinds (each a function of the question, the sane answer and another question's answer):

- `looped`: the answer's first line repeated up to a generation cap (`CAP_WORDS` words);
- `echo`: the question repeated to about the sane answer's length;
- `empty`: nothing;
- `off_topic`: another question's answer;
- `neighbour`: the answer to the most similar other question (most shared content words): what a
  model copying a retrieved demonstration's answer would give;
- `run_on`: the sane answer, then a new `Question:` turn the model went on to write;
- `cut`: the sane answer cut mid-sentence at a quarter of its length.

The fitted judge's fit adds such comparisons, labelled as losses for the degenerate answer, built
from the fit data's own baseline answers (`constructed_losses`): GPT-4's verdicts hold few
degenerate answers outside one system, so without them a judge never fitted to that system cannot
learn what degeneration costs. They are fitted, never validated against (they are not GPT-4's).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace

from .features import stop_words, words
from .labelled import Labelled

CAP_WORDS = 300  # words a looped answer runs to (a generation cap)
CONSTRUCTED = "constructed"  # the `judge` of a constructed comparison, and its systems' prefix


def looped(question: str, answer: str, other: tuple[str, str]) -> str:
    """The answer's first line repeated to the cap."""
    line = next((ln.strip() for ln in answer.splitlines() if ln.strip()), answer.strip())
    return "\n".join([line] * (CAP_WORDS // max(len(line.split()), 1) + 1))


def echo(question: str, answer: str, other: tuple[str, str]) -> str:
    """The question repeated to about the sane answer's length."""
    times = max(len(answer.split()) // max(len(question.split()), 1), 1)
    return "\n\n".join([question.strip()] * times)


def empty(question: str, answer: str, other: tuple[str, str]) -> str:
    """No answer at all."""
    return ""


def off_topic(question: str, answer: str, other: tuple[str, str]) -> str:
    """Another question's answer."""
    return other[1]


def neighbour(question: str, answer: str, other: tuple[str, str]) -> str:
    """The answer to the closest other question (`constructed_losses` passes that one as `other`)."""
    return other[1]


def run_on(question: str, answer: str, other: tuple[str, str]) -> str:
    """The answer, then a new turn: another question and its answer."""
    return f"{answer}\n\nQuestion: {other[0]}\n\nHere\u2019s an example answer: {other[1]}"


def cut(question: str, answer: str, other: tuple[str, str]) -> str:
    """The answer cut mid-sentence at a quarter of its length (at a space, trailing punctuation gone)."""
    head = answer[: len(answer) // 4].rsplit(" ", 1)[0]
    return head.rstrip(" .,;:!?\n")


KINDS: dict[str, Callable[[str, str, tuple[str, str]], str]] = {
    "looped": looped,
    "echo": echo,
    "empty": empty,
    "off_topic": off_topic,
    "neighbour": neighbour,
    "run_on": run_on,
    "cut": cut,
}
MIN_WORDS = 40  # sane answers shorter than this are not degraded (a quarter of them is no answer)


def constructed_losses(items: Sequence[Labelled], per_kind: int = 400, seed: int = 0) -> list[Labelled]:
    """Comparisons of degenerate answers (system `constructed:<kind>`) against the sane baseline answers
    of `items`, `per_kind` questions per kind drawn at random, each a loss for the degenerate answer."""
    sane: dict[str, Labelled] = {}
    for x in items:
        if x.judge != CONSTRUCTED and len(x.baseline_answer.split()) >= MIN_WORDS:
            sane.setdefault(x.question, x)
    questions = sorted(sane)
    if len(questions) < 2:
        return []
    rng = random.Random(seed)
    stop = stop_words()
    content = {q: {w for w in words(q) if w not in stop} for q in questions}
    out = []
    for kind, build in KINDS.items():
        for question in rng.sample(questions, min(per_kind, len(questions))):
            x = sane[question]
            if kind == "neighbour":
                others = (q for q in questions if q != question)
                other = sane[max(others, key=lambda q: _jaccard(content[q], content[question]))]
            else:
                step = rng.randrange(1, len(questions))
                other = sane[questions[(questions.index(question) + step) % len(questions)]]
            out.append(
                replace(
                    x,
                    system=f"{CONSTRUCTED}:{kind}",
                    sample=0,
                    answer=build(x.question, x.baseline_answer, (other.question, other.baseline_answer)),
                    verdict="lose",
                    judge=CONSTRUCTED,
                )
            )
    return out


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0
