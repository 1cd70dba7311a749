"""The workshop's playground: a question answered directly and with retrieved demos in one batch, both
streamed as tokens arrive (the streams add up to the answers), Stop heard at once, mistakes one line."""

from __future__ import annotations

import threading

import pytest

from icalign_nb.errors import UserError
from icalign_nb.generation.streaming import CANCELLED
from icalign_nb.retrieval import prompts
from icalign_nb.study.playground import DIRECT, IN_CONTEXT, Asked, Playground
from icalign_nb.study.study import Study

QUESTION = "How do I make a good cup of tea?"


@pytest.fixture(scope="module")
def playground() -> Playground:
    """A playground on the tiny random model (the starter pool, 24 new tokens at most)."""
    return Playground(Study(model="tiny-random", max_new_tokens=24, temperature=0.7))


def test_both_answers_stream_and_the_streams_are_the_answers(playground: Playground) -> None:
    asked = playground.prepare(QUESTION)
    assert asked.retrieval.demo_ids and asked.retrieval.query == QUESTION
    assert f"Question: {QUESTION}" in asked.retrieval.prompt[-len(QUESTION) - 60 :]  # the question comes last
    heard: list[str] = []
    results = playground.answer(asked, lambda a, column: heard.append(column))
    assert set(results) == {DIRECT, IN_CONTEXT} and asked.done
    for column, result in results.items():
        stream = asked.streams[column]
        assert stream.result is result and stream.text == result.response
        assert stream.tokens == result.n_generated_tokens and stream.first_token_at is not None
        assert heard.count(column) >= 2  # it filled in over several updates, not at the end only
    direct, in_context = (r.request for r in (results[DIRECT], results[IN_CONTEXT]))
    assert direct.prompt == prompts.zero_shot_prompt(QUESTION) and in_context.prompt == asked.retrieval.prompt
    assert in_context.seed != direct.seed


def test_the_same_question_gives_the_same_answers(playground: Playground) -> None:
    first = playground.answer(playground.prepare(QUESTION))
    again = playground.answer(playground.prepare(QUESTION))
    assert {k: r.response for k, r in first.items()} == {k: r.response for k, r in again.items()}


def test_stop_ends_both_answers_as_they_are(playground: Playground) -> None:
    asked = playground.prepare(QUESTION)

    def stop_soon(a: Asked, column: str) -> None:
        if a.streams[column].tokens >= 2:
            a.stop.set()

    results = playground.answer(asked, stop_soon)
    assert {r.stopped_by for r in results.values()} == {CANCELLED}
    assert all(r.n_generated_tokens < 24 for r in results.values())
    assert all(asked.streams[c].result is results[c] for c in results)


def test_stop_from_another_thread_is_heard(playground: Playground) -> None:
    asked = playground.prepare(QUESTION)
    asked.stop.set()  # pressed before the first token: both end cancelled
    worker = threading.Thread(target=playground.answer, args=(asked,))
    worker.start()
    worker.join(timeout=60)
    assert asked.done and {s.result.stopped_by for s in asked.streams.values()} == {CANCELLED}


def test_a_longer_cap_leaves_the_prompt_less_room(playground: Playground) -> None:
    short, long = (playground.prepare(QUESTION, max_new_tokens=n) for n in (24, 1500))
    assert long.max_new_tokens == 1500 and len(long.retrieval.demo_ids) < len(short.retrieval.demo_ids)
    assert playground.config(long).max_new_tokens == 1500


def test_fewer_demos_when_asked(playground: Playground) -> None:
    one = playground.prepare(QUESTION, demos=1)
    assert len(one.retrieval.demo_ids) == 1
    none = playground.prepare(QUESTION, demos=0)
    assert len(none.retrieval.demo_ids) == 0
    every = playground.prepare(QUESTION)  # the slider's end: all that fit, as the paper packs them
    assert len(every.retrieval.demo_ids) > 1 and every.retrieval.demo_ids[-1:] == one.retrieval.demo_ids
    assert list(playground._retrievers) == [playground.study.pool]  # one retriever per pool, not per count


@pytest.mark.parametrize(
    ("question", "pool", "cap", "expected"),
    [
        ("   ", None, 0, "the question is empty"),
        (QUESTION, "no-such-pool", 0, "no-such-pool"),
        (QUESTION, None, 4000, "leave no room for a prompt"),  # tiny-random's context is 2,048 tokens
    ],
)
def test_a_mistake_is_one_line(
    playground: Playground, question: str, pool: str | None, cap: int, expected: str
) -> None:
    with pytest.raises(UserError) as caught:
        playground.prepare(question, pool, max_new_tokens=cap or None)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_the_view_shows_both_answers_and_how_they_ended(playground: Playground) -> None:
    from icalign_nb.views import explain
    from icalign_nb.views.playground import PlaygroundView

    view = PlaygroundView(playground, QUESTION)
    view.run(QUESTION)
    assert view.asked is not None and view.asked.done
    for column, box in view.columns.items():
        result = view.asked.streams[column].result
        assert result is not None and column in box.value
        assert explain.ended(result.stopped_by, result.n_generated_tokens) in box.value
    assert "candidate demos kept" in view.demos_view.value and "done in" in view.status.value
    view.run("  ")
    assert "cannot answer: the question is empty" in view.status.value
    assert not view.ask.disabled and view.stop.disabled
