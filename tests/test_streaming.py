"""The decode loop's token callback: rows stream together, as whole characters, never a stop string,
and the callback can stop the call."""

from __future__ import annotations

import pytest

from icalign_nb.generation.streaming import CANCELLED, TextStream
from icalign_nb.generation.transformers_backend import TransformersBackend
from icalign_nb.generation.types import GenerationConfig, Request, item_seed
from icalign_nb.retrieval.prompts import PAPER_STOP, icl_prompt, zero_shot_prompt

QUESTION = "How do I keep basil alive on a windowsill?"


def test_text_stream_holds_back_partial_characters_stops_and_trailing_space() -> None:
    stream = TextStream(PAPER_STOP)
    assert stream.piece(" Hello") == "Hello"  # the saved answer is stripped: so is the stream
    assert stream.piece(" Hello wor\ufffd") == " wor"  # an incomplete UTF-8 character waits
    assert stream.piece(" Hello world \n") == "ld"  # trailing space waits (it may be stripped)
    assert stream.piece(" Hello world \nQues") == ""  # the start of the stop string waits
    assert stream.piece(" Hello world \nQuestion: next", final=True) == ""
    assert stream.shown == "Hello world"


def test_text_stream_of_real_tokens_joins_into_the_text(tiny_tokenizer) -> None:
    text = "Café au lait ☕ costs 3€, 😀 ok. 日本語も"
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    stream, pieces = TextStream(PAPER_STOP), []
    for n in range(1, len(ids) + 1):
        pieces.append(stream.piece(tiny_tokenizer.decode(ids[:n]), final=n == len(ids)))
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == text
    assert sum(bool(p) for p in pieces) > 5  # it streamed, not all at the end


def two_rows(tokenizer: object, bos: bool, stop: tuple[str, ...] = PAPER_STOP) -> list[Request]:
    """The playground's pair: the question asked directly and with two demos, one sample each."""
    from icalign_nb.data.loaders import load_pool
    from icalign_nb.models.tokens import encode_prompts

    pool = load_pool("starter")
    demos = list(zip(pool["prompt"].to_list()[:2], pool["response"].to_list()[:2], strict=True))
    texts = [zero_shot_prompt(QUESTION), icl_prompt(QUESTION, demos)]
    ids = encode_prompts(tokenizer, texts, bos)
    return [
        Request(name, 0, text, stop, item_seed(0, name, 0), tuple(p))
        for name, text, p in zip(("direct", "in-context"), texts, ids, strict=True)
    ]


def stream(backend: TransformersBackend, requests: list[Request], config: GenerationConfig, stop_after=None):
    """Run with a callback; (the callback's event lists, the results by key)."""
    calls: list[list] = []

    def on_tokens(events: list) -> bool:
        calls.append(events)
        return stop_after is None or len(calls) < stop_after

    results = {r.request.key: r for batch in backend.generate(requests, config, on_tokens) for r in batch}
    return calls, results


def check_streams(calls: list[list], results: dict, stops: tuple[str, ...]) -> None:
    """Each row's pieces join into its saved answer, hold no stop string, and end with its result."""
    for key, result in results.items():
        events = [e for events in calls for e in events if e.request.key == key]
        assert events[-1].result == result and all(e.result is None for e in events[:-1])
        assert "".join(e.text for e in events) == result.response
        assert not any(s in e.text for e in events for s in stops)
        assert sum(e.token is not None for e in events) == result.n_generated_tokens


@pytest.fixture(scope="module")
def tiny() -> TransformersBackend:
    return TransformersBackend("tiny-random", batch_size=4, device="cpu", dtype="float32")


def test_two_rows_stream_together_through_one_batch(tiny) -> None:
    stops = ("k",)  # a random model writes a "k" in time: rows end by stop at different steps
    requests = two_rows(tiny.tokenizer, tiny.bos, stops)
    config = GenerationConfig(max_new_tokens=40, samples=1, temperature=1.0)
    calls, results = stream(tiny, requests, config)
    assert set(results) == {r.key for r in requests}
    together = [events for events in calls if {e.request.key for e in events} == set(results)]
    assert len(together) >= 2 and tiny.stats.max_rows == 2  # both rows in the same steps
    check_streams(calls, results, stops)
    alone = {r.request.key: r.response for r in tiny.generate_batch(requests, config)}
    assert alone == {k: r.response for k, r in results.items()}  # the callback changes nothing


def test_the_callback_stops_every_row_cleanly(tiny) -> None:
    requests = two_rows(tiny.tokenizer, tiny.bos, ())
    waiting = Request("queued", 0, "never started", (), 1, (5, 6, 7))
    tiny.max_rows = 2
    try:
        calls, results = stream(tiny, [*requests, waiting], GenerationConfig(max_new_tokens=50, samples=1), 3)
    finally:
        tiny.max_rows = 4
    assert len(calls) == 4  # three steps, then the rows' ends
    assert {r.stopped_by for r in results.values()} == {CANCELLED} and len(results) == 3
    assert results[("queued", 0)].n_generated_tokens == 0 and results[("queued", 0)].response == ""
    for req in requests:
        assert 0 < results[req.key].n_generated_tokens < 50
    check_streams(calls, {k: v for k, v in results.items() if k != ("queued", 0)}, ())


@pytest.mark.slow
def test_gemma3_270m_streams_both_answers() -> None:
    backend = TransformersBackend("gemma-3-270m", device="cpu")
    requests = two_rows(backend.tokenizer, backend.bos)
    calls, results = stream(backend, requests, GenerationConfig(max_new_tokens=48, samples=1, seed=3))
    check_streams(calls, results, PAPER_STOP)
    for key in results:
        updates = [e for events in calls for e in events if e.request.key == key and e.text]
        assert len(updates) >= 3, key  # the answer arrives in pieces
