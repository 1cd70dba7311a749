"""Decoding settings, sampling, row finishing and the continuous-batching backend on tiny-random."""

from __future__ import annotations

import pytest

from icalign_nb.errors import UserError
from icalign_nb.generation.backends import make_backend
from icalign_nb.generation.transformers_backend import Sampler, TransformersBackend, finish_row
from icalign_nb.generation.types import GenerationConfig, Request, item_seed
from icalign_nb.retrieval.prompts import PAPER_STOP, zero_shot_prompt

QUERIES = ["What is the capital of France?", "Name three colours.", "Why is the sky blue?", "Say hi."]


@pytest.fixture(scope="module")
def backend() -> TransformersBackend:
    """tiny-random loaded once for the module, in float32 (where rows are exactly batch-independent)."""
    return TransformersBackend("tiny-random", batch_size=4, device="cpu", dtype="float32")


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


def test_sampler_keeps_top_k_and_top_p_and_draws_per_row() -> None:
    import torch

    logits = torch.tensor([[5.0, 4.0, 3.0, -9.0, -9.0]] * 2)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    picks = {t for _ in range(200) for t in Sampler(GenerationConfig(top_k=2)).pick(logits, gens)}
    assert picks == {0, 1}  # top-k 2: never token 2 or below
    nucleus = Sampler(GenerationConfig(top_k=None, top_p=0.5, temperature=1.0))
    assert {t for _ in range(100) for t in nucleus.pick(logits, gens)} == {0}  # 0 alone holds > 0.5
    assert Sampler(GenerationConfig(temperature=0)).pick(logits, gens) == [0, 0]
    pair = Sampler(GenerationConfig(temperature=3.0)).pick(
        logits, [torch.Generator().manual_seed(s) for s in (7, 8)]
    )
    for row, seed in enumerate((7, 8)):  # a row's draw depends on its own generator only
        alone = Sampler(GenerationConfig(temperature=3.0)).pick(
            logits[:1], [torch.Generator().manual_seed(seed)]
        )
        assert alone == [pair[row]]


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
    backend.max_rows = 1
    try:
        single = {r.request.key: r for b in backend.generate(requests()[:2], config) for r in b}
    finally:
        backend.max_rows = 4
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


def test_a_refilled_batch_equals_each_request_alone_in_float32(backend) -> None:
    """Rows leave at different steps and queued ones take their slots (a shared prompt is encoded once);
    every answer is the one its request gets alone, token for token."""
    config = GenerationConfig(max_new_tokens=24, samples=3)
    reqs = [
        Request(f"q{i}", s, zero_shot_prompt(q), ("k",), item_seed(3, f"q{i}", s))
        for i, q in enumerate(QUERIES)
        for s in range(3)
    ]
    backend.max_rows = 4  # 12 rows through 4 slots
    try:
        batched = {r.request.key: r for b in backend.generate(reqs, config) for r in b}
        stats = backend.stats
    finally:
        backend.max_rows = 4
    assert stats.prefills == len(QUERIES)  # one encoding per distinct prompt, shared by its 3 samples
    assert stats.max_rows == 4 and len(batched) == 12
    assert len({r.n_generated_tokens for r in batched.values()}) > 1, "rows should end at different steps"
    for req in reqs:
        alone = backend.generate_batch([req], config)[0]
        mine = batched[req.key]
        assert (alone.response, alone.n_generated_tokens, alone.stopped_by) == (
            mine.response,
            mine.n_generated_tokens,
            mine.stopped_by,
        ), req.key


def test_results_come_as_rows_finish_with_their_own_seconds(backend) -> None:
    config = GenerationConfig(max_new_tokens=30, samples=1)
    lists = list(backend.generate(requests(stop=("k",)), config))
    results = [r for b in lists for r in b]
    assert sorted(r.request.key for r in results) == sorted(r.key for r in requests())
    assert len(lists) > 1  # yielded as rows finished, not all at the end
    assert all(r.seconds > 0 for r in results)
    assert len({round(r.seconds, 6) for r in results}) > 1  # each row its own time, not a share


def test_token_budget_limits_rows(tiny_tokenizer) -> None:
    from icalign_nb.models.loading import load_model

    model = load_model("tiny-random", device="cpu", dtype="float32")
    assert max(len(tiny_tokenizer(zero_shot_prompt(q))["input_ids"]) for q in QUERIES) <= 64
    config = GenerationConfig(max_new_tokens=10, samples=1)
    # each row: its prompt's block and a block for its 10 tokens (the budget counts 64-token blocks)
    tight = TransformersBackend("tiny-random", model=model, token_budget=2 * 2 * 64 + 63)
    results = [r for b in tight.generate(requests(), config) for r in b]
    assert len(results) == len(QUERIES) and tight.stats.max_rows == 2
    alone = TransformersBackend("tiny-random", model=model, token_budget=1)  # one row at a time
    assert [r.response for r in alone.generate_batch(requests(), config)] == [
        r.response for r in tight.generate_batch(requests(), config)
    ]
    assert alone.stats.max_rows == 1
    with pytest.raises(UserError, match="token budget"):
        TransformersBackend("tiny-random", model=model, token_budget=0)


def test_bos_follows_the_model_rule(backend) -> None:
    """tiny-random has SmolLM2's tokenizer, which adds no BOS: prompts are encoded without one."""
    assert backend.bos is False
    assert backend.encode("Hi") == backend.tokenizer("Hi", add_special_tokens=False)["input_ids"]
