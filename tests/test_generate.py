"""Decoding settings, batching, row finishing and the transformers backend on tiny-random."""

from __future__ import annotations

import pytest

from icalign_nb.errors import UserError
from icalign_nb.generation.backends import make_backend
from icalign_nb.generation.transformers_backend import TransformersBackend, finish_row, length_batches
from icalign_nb.generation.types import GenerationConfig, Request, item_seed
from icalign_nb.retrieval.prompts import PAPER_STOP, zero_shot_prompt

QUERIES = ["What is the capital of France?", "Name three colours.", "Why is the sky blue?", "Say hi."]


@pytest.fixture(scope="module")
def backend() -> TransformersBackend:
    """tiny-random loaded once for the module."""
    return TransformersBackend("tiny-random", batch_size=4, device="cpu")


def requests(stop: tuple[str, ...] = PAPER_STOP, seed: int = 0) -> list[Request]:
    return [
        Request(f"q{i}", 0, zero_shot_prompt(q), stop, item_seed(seed, f"q{i}", 0))
        for i, q in enumerate(QUERIES)
    ]


def test_paper_defaults_and_validation() -> None:
    config = GenerationConfig()
    assert (config.temperature, config.top_p, config.top_k, config.max_new_tokens, config.samples) == (
        0.7,
        1.0,
        50,
        1000,
        5,
    )
    for bad in ({"temperature": -1}, {"top_p": 0}, {"top_k": -2}, {"samples": 0}, {"max_new_tokens": 0}):
        with pytest.raises(UserError):
            GenerationConfig(**bad)


def test_item_seed_is_stable_and_distinct() -> None:
    assert item_seed(0, "q1", 0) == item_seed(0, "q1", 0)
    assert (
        len({item_seed(0, "q1", 0), item_seed(0, "q1", 1), item_seed(1, "q1", 0), item_seed(0, "q2", 0)}) == 4
    )


def test_length_batches_group_similar_lengths_and_equal_stops() -> None:
    reqs = [Request(f"q{n}", 0, "x" * n, PAPER_STOP, 0) for n in (50, 3, 40, 4, 41, 5)]
    reqs.append(Request("chat", 0, "x" * 4, (), 0))
    batches = length_batches(reqs, 3)
    assert sorted(r.key for b in batches for r in b) == sorted(r.key for r in reqs)
    assert all(len(b) <= 3 and len({r.stop for r in b}) == 1 for b in batches)
    assert [r.query_id for r in batches[1]] == ["q3", "q4", "q5"]
    with pytest.raises(UserError):
        length_batches(reqs, 0)


def test_finish_row_cuts_stop_and_reports_how(tiny_tokenizer) -> None:
    tok = tiny_tokenizer
    eos, pad = {tok.eos_token_id}, tok.pad_token_id
    ids = tok("An answer.\nQuestion: next", add_special_tokens=False)["input_ids"]
    answer, n, how = finish_row(ids + [pad, pad], tok, PAPER_STOP, eos, pad)
    assert (answer, n, how) == ("An answer.", len(ids), "stop")
    short = tok("Done", add_special_tokens=False)["input_ids"]
    assert finish_row(short + [tok.eos_token_id, pad], tok, PAPER_STOP, eos, pad) == (
        "Done",
        len(short) + 1,
        "eos",
    )
    assert finish_row(short, tok, PAPER_STOP, eos, pad) == ("Done", len(short), "length")


def test_batched_generation_reproducible_and_batch_independent(backend) -> None:
    config = GenerationConfig(max_new_tokens=12, samples=1)
    batched = {r.request.key: r for b in backend.generate(requests(), config) for r in b}
    backend.batch_size = 1
    try:
        single = {r.request.key: r for b in backend.generate(requests()[:2], config) for r in b}
    finally:
        backend.batch_size = 4
    assert len(batched) == len(QUERIES)
    for key, r in single.items():
        assert r.response == batched[key].response
        assert r.n_generated_tokens == batched[key].n_generated_tokens
    other = {r.request.key: r.response for b in backend.generate(requests(seed=1), config) for r in b}
    assert other != {k: r.response for k, r in batched.items()}
    for r in batched.values():
        assert r.stopped_by in {"stop", "eos", "length"} and 0 < r.n_generated_tokens <= 12
        assert r.n_prompt_tokens == len(
            backend.tokenizer(r.request.prompt, add_special_tokens=False)["input_ids"]
        )


def test_stop_strings_end_rows_in_flight(backend) -> None:
    config = GenerationConfig(max_new_tokens=40, samples=1)
    results = [r for b in backend.generate(requests(stop=("e",)), config) for r in b]
    stopped = [r for r in results if r.stopped_by == "stop"]
    assert stopped, "a random model should write an 'e' within 40 tokens"
    for r in stopped:
        assert "e" not in r.response and r.n_generated_tokens < 40


def test_greedy_is_deterministic(backend) -> None:
    config = GenerationConfig(max_new_tokens=8, samples=1, temperature=0)
    first = [r.response for b in backend.generate(requests(seed=0), config) for r in b]
    second = [r.response for b in backend.generate(requests(seed=5), config) for r in b]
    assert first == second


def test_unknown_backend_is_one_line() -> None:
    with pytest.raises(UserError, match="unknown backend 'nope'"):
        make_backend("nope", "tiny-random")
