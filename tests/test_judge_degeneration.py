"""Degenerate answers lose to a sane one under the shipped fitted judge, each kind in >= 95% of cases.

Built (`judging.degenerate`) from the starter eval set's reference answers (judged without a
reference: the sane answer is the reference itself) and from the paper release's davinci-003
answers (judged with ChatGPT's answers as reference, and without; prompts whose answers were
degraded for the fit are left out): one line looped to the cap, the question repeated, an empty
answer, another question's answer, the sane answer running on into a new `Question:`, and the sane
answer cut mid-sentence at a quarter of its length (against the same answer whole).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from icalign_nb.judging.backends.fitted import FittedJudge, moved_by, moved_in_words
from icalign_nb.judging.comparisons import Comparison, Reply
from icalign_nb.judging.degenerate import KINDS
from icalign_nb.judging.features import IN_WORDS
from icalign_nb.judging.fit import read_coefficients
from icalign_nb.judging.spec import coefficients_path, fitted_models, parse_judge_spec

ISSUE_KINDS = ("looped", "echo", "empty", "off_topic", "run_on", "cut")  # `neighbour` is a fit-only kind


def loss_rates(rows: list[tuple[str, str]], references: list[str | None]) -> dict[str, float]:
    """Per kind: the share of questions on which the degenerate answer loses to the sane one (a draw is
    no loss); another question's answer is the one half the list away."""
    judge = FittedJudge(parse_judge_spec("fitted"))
    rates = {}
    for kind in ISSUE_KINDS:
        items = []
        for i, (question, good) in enumerate(rows):
            bad = KINDS[kind](question, good, rows[(i + len(rows) // 2) % len(rows)])
            items.append(Comparison(f"q{i}", 0, "system_first", question, bad, good, references[i]))
        replies: dict[int, Reply] = {}
        judge.judge(items, replies.__setitem__)
        lost = [replies[i].scores[1] - replies[i].scores[0] > judge.spec.margin for i in range(len(items))]
        rates[kind] = sum(lost) / len(lost)
    return rates


def test_degenerate_answers_lose_to_the_starter_references() -> None:
    from icalign_nb.data.loaders import load_eval

    eval_set = load_eval("starter")
    rows = list(zip(eval_set["prompt"], eval_set["reference"], strict=True))
    rates = loss_rates(rows, [None] * len(rows))
    assert all(rate >= 0.95 for rate in rates.values()), rates


@pytest.mark.slow
@pytest.mark.parametrize("with_reference", [True, False])
def test_degenerate_answers_lose_to_davinci003_on_the_release(
    shared_data: Path, with_reference: bool
) -> None:
    from icalign_nb.data.loaders import load_baseline

    release = shared_data / "paper_release"
    fitted = read_coefficients(coefficients_path("shipped")).fit_data["constructed"]
    degraded = {query_id for ids in fitted.values() for query_id in ids}
    davinci = load_baseline(release / "davinci003_results.jsonl")
    davinci = davinci.filter(~davinci["id"].is_in(sorted(degraded))).head(100)
    chatgpt = load_baseline(release / "chatgpt_results.jsonl")
    rows = [(p, r) for p, r in zip(davinci["prompt"], davinci["response"], strict=True) if r.strip()]
    refs = dict(zip(chatgpt["prompt"], chatgpt["response"], strict=True))
    references = [refs[p] if with_reference else None for p, _ in rows]
    rates = loss_rates(rows, references)
    assert all(rate >= 0.95 for rate in rates.values()), rates


def test_swapping_the_answers_gives_exactly_one_minus_p() -> None:
    judge = FittedJudge(parse_judge_spec("fitted"))
    q = "How do I make my bread rise better?"
    a = "Use fresh yeast, knead for ten minutes and let the dough rise somewhere warm for an hour."
    b = "Bread is a food. Bread is a food. Bread is a food."
    for ref in (None, "Proof the yeast, knead well and let it rise in a warm place until doubled."):
        items = [Comparison("q", 0, o, q, a, b, ref) for o in ("system_first", "baseline_first")]
        replies: dict[int, Reply] = {}
        judge.judge(items, replies.__setitem__)
        (p1, p2), (s1, s2) = replies[0].scores, replies[1].scores
        assert p1 > 0.5 and p1 == pytest.approx(s2, abs=1e-12) and p2 == pytest.approx(s1, abs=1e-12)
        assert replies[0].raw.splitlines()[0] == f"{p1:.4f} {p2:.4f}"
        named = moved_by(replies[0].raw)
        assert len(named) == 3 and [n for n, _ in named] == [n for n, _ in moved_by(replies[1].raw)]
        assert moved_by("8 7\nAssistant 1 was better") == []


def test_what_moved_a_verdict_is_said_of_the_first_answer_in_words() -> None:
    """The three features a reply names read as what the first answer is next to the other ("longer",
    "more repeated phrases"), each with its log-odds share toward the first answer: the same features
    with opposite words and shares when the answers swap places."""
    judge = FittedJudge(parse_judge_spec("fitted"))
    models = fitted_models("shipped")
    q = "How do I make my bread rise better?"
    a = "Use fresh yeast, knead for ten minutes and let the dough rise somewhere warm for an hour."
    b = "Bread is a food. Bread is a food. Bread is a food."
    items = [Comparison("q", 0, o, q, a, b) for o in ("system_first", "baseline_first")]
    replies: dict[int, Reply] = {}
    judge.judge(items, replies.__setitem__)
    first, second = (moved_in_words(replies[i].raw, models) for i in (0, 1))
    assert len(first) == 3 and [s for _, s in first] == [-s for _, s in second]
    for (words, _), (swapped, _) in zip(first, second, strict=True):
        pair = next(pair for pair in IN_WORDS.values() if words in pair)
        assert {words, swapped} == set(pair)  # the other answer's side of the same feature
    assert "fewer repeated phrases" in dict(first) and dict(first)["fewer repeated phrases"] > 0
    assert moved_in_words("8 7\nAssistant 1 was better", models) == []
    # a refit whose two models weigh length in opposite directions cannot say "longer": it names the topic
    flipped = replace(models.without_reference, coef=tuple(-c for c in models.without_reference.coef))
    raw = "0.6 0.4\nP(Assistant 1 wins) ...; log-odds moved by log_words +0.50, reference_recall -0.20"
    assert moved_in_words(raw, replace(models, without_reference=flipped)) == [
        ("length", 0.5),
        ("covers less of the reference", -0.2),
    ]
