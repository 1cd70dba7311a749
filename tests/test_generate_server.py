"""The OpenAI-compatible server backend over real HTTP, against local servers that fail first or refuse
fields they do not know."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from scripted_server import ScriptedServer, picky_server

from icalign_nb.errors import UserError
from icalign_nb.generation.rundir import generations_frame
from icalign_nb.generation.runs import RunOptions, RunSpec, run_generation
from icalign_nb.generation.server_backend import ServerBackend, ServerOptions, request_body
from icalign_nb.generation.types import GenerationConfig, Request
from icalign_nb.models.loading import load_tokenizer
from icalign_nb.retrieval.prompts import PAPER_STOP
from icalign_nb.retrieval.settings import RetrievalSettings


def completion(body: dict) -> dict:
    """A /v1/completions reply that echoes the prompt's end, then leaks past the stop string."""
    text = f" answer to {body['prompt'][-12:]!r}\nQuestion: leaked"
    return {
        "id": "c1",
        "object": "text_completion",
        "created": 0,
        "model": body["model"],
        "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


@pytest.fixture()
def server(request: pytest.FixtureRequest) -> Iterator[ScriptedServer]:
    with ScriptedServer(completion, tuple(getattr(request, "param", [429, 500, 503]))) as fake:
        yield fake


def options(url: str, **kw: object) -> ServerOptions:
    base = {"served_model": "tiny", "base_url": url, "api_key": "sk-test", "concurrency": 2}
    return ServerOptions(**{**base, **kw})


REQS = [
    Request(f"q{i}", 0, f"Question: number {i}\n\nAnswer:", PAPER_STOP, 100 + i, (1, 2)) for i in range(5)
]


def test_request_body_carries_the_decoding_settings() -> None:
    body = request_body(REQS[0], GenerationConfig(max_new_tokens=64, top_p=0.9), "m")
    assert body["model"] == "m" and body["max_tokens"] == 64 and body["temperature"] == 0.7
    assert body["top_p"] == 0.9 and body["stop"] == ["\nQuestion:"] and body["seed"] == 100
    assert body["extra_body"] == {"top_k": 50}


def test_retries_then_answers_over_http(server: ScriptedServer) -> None:
    backend = ServerBackend(options(server.url, chunk_size=2))
    chunks = list(backend.generate(REQS, GenerationConfig(max_new_tokens=32)))
    results = [r for c in chunks for r in c]
    assert sorted(r.request.key for r in results) == sorted(r.key for r in REQS)
    assert len(server.requests) == len(REQS) + 3  # three scripted failures were retried
    assert all(a == "Bearer sk-test" for a in server.auth)
    for r in results:
        assert r.response.startswith("answer to") and "Question:" not in r.response
        assert (r.stopped_by, r.n_prompt_tokens, r.n_generated_tokens) == ("stop", 11, 7)
    sent = server.requests[-1]
    assert sent["temperature"] == 0.7 and sent["top_k"] == 50 and sent["stop"] == ["\nQuestion:"]


@pytest.mark.parametrize("server", [[429, 429, 429, 429]], indirect=True)
def test_gives_up_after_max_retries(server: ScriptedServer) -> None:
    backend = ServerBackend(options(server.url, max_retries=2, concurrency=1))
    with pytest.raises(UserError, match="still failing after 2 retries"):
        list(backend.generate(REQS[:1], GenerationConfig()))
    assert len(server.requests) == 3


@pytest.mark.parametrize("server", [[404]], indirect=True)
def test_client_errors_are_not_retried(server: ScriptedServer) -> None:
    with pytest.raises(UserError, match=r"refused the request \(404\)"):
        list(ServerBackend(options(server.url)).generate(REQS[:1], GenerationConfig()))
    assert len(server.requests) == 1


def test_base_url_and_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ICALIGN_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(UserError, match="base URL"):
        ServerOptions.from_env("m")
    monkeypatch.setenv("ICALIGN_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ICALIGN_API_KEY", "sk-env")
    opts = ServerOptions.from_env("m")
    assert opts.base_url.endswith(":9/v1") and opts.api_key == "sk-env" and "sk-env" not in repr(opts)


def server_run(queries: int, samples: int, max_new_tokens: int) -> RunSpec:
    """A zero-shot run of the tiny model through a server serving it as 'tiny'."""
    return RunSpec(
        model="tiny-random",
        backend="openai",
        retrieval=RetrievalSettings(preset="zero-shot", limit=queries),
        served_model="tiny",
        generation=GenerationConfig(max_new_tokens=max_new_tokens, samples=samples),
    )


def test_a_run_through_the_server_never_saves_the_key(server: ScriptedServer, tmp_path) -> None:
    spec = server_run(queries=3, samples=2, max_new_tokens=16)
    opts = RunOptions(base_url=server.url, api_key="sk-secret-123", batch_size=4, progress=False)
    summary = run_generation(tmp_path / "run", spec, opts)
    assert summary.generated == 6 and summary.stopped_by == {"stop": 6}
    frame = generations_frame(tmp_path / "run")
    assert frame.height == 6 and frame["response"].str.starts_with("answer to").all()
    assert all("sk-secret" not in p.read_text() for p in (tmp_path / "run").iterdir())
    assert {b["model"] for b in server.requests} == {"tiny"}


def test_a_server_without_usage_has_its_tokens_counted_by_the_run_s_tokenizer(tmp_path) -> None:
    """No usage in the reply: the run counts the text as sent with the model's tokenizer (never a 0
    that would read as an empty answer); a backend with no tokenizer refuses in one line."""
    sent = " a fairly long answer of several tokens\nQuestion: leaked"

    def reply(body: dict) -> dict:
        return {"choices": [{"index": 0, "text": sent, "finish_reason": "stop"}]}

    with ScriptedServer(reply) as fake:
        spec = server_run(queries=2, samples=1, max_new_tokens=32)
        run_generation(tmp_path / "run", spec, RunOptions(base_url=fake.url, progress=False))
        with pytest.raises(UserError, match="reports no token counts") as refused:
            list(ServerBackend(options(fake.url)).generate(REQS[:1], GenerationConfig()))
    assert "\n" not in str(refused.value)
    counted = len(load_tokenizer("tiny-random")(sent, add_special_tokens=False)["input_ids"])
    frame = generations_frame(tmp_path / "run")
    assert counted > 5 and frame["n_generated_tokens"].to_list() == [counted, counted]


STANDARD = {"model", "prompt", "max_tokens", "temperature", "top_p", "seed", "n", "stop", "stream"}
SAMPLES = [
    Request(f"q{i}", s, f"Question: {i}?\n\nAnswer:", PAPER_STOP, 10 * i + s, (1,))
    for i in range(3)
    for s in range(2)
]


def test_a_refused_top_k_goes_as_generation_config_with_sampling_on(capsys: pytest.CaptureFixture) -> None:
    server = picky_server(STANDARD | {"generation_config"}, lambda body: f" seed {body['seed']}\nQuestion:")
    try:
        results = [
            r for c in ServerBackend(options(server.url)).generate(SAMPLES, GenerationConfig()) for r in c
        ]
    finally:
        server.close()
    assert sorted(r.request.key for r in results) == sorted(r.key for r in SAMPLES)
    assert all(r.stopped_by == "stop" and "Question" not in r.response for r in results)
    last = server.requests[-1]
    assert "top_k" not in last and json.loads(last["generation_config"]) == {
        "top_k": 50,
        "do_sample": True,
        "max_new_tokens": 1000,
    }
    # learnt once: only the first sample of each prompt (in flight together) can be refused
    refused = [b for b in server.requests if "top_k" in b]
    assert 1 <= len(refused) <= 3 and len(server.requests) == len(SAMPLES) + len(refused)
    assert capsys.readouterr().err == ""  # the top-k is applied: nothing to say


def test_a_server_that_takes_no_top_k_is_said_in_one_line(capsys: pytest.CaptureFixture) -> None:
    server = picky_server(STANDARD, lambda body: " same answer")
    try:
        config = GenerationConfig(max_new_tokens=8)
        results = [r for c in ServerBackend(options(server.url)).generate(SAMPLES, config) for r in c]
    finally:
        server.close()
    assert len(results) == len(SAMPLES)
    assert not set(server.requests[-1]) - STANDARD
    err = capsys.readouterr().err.splitlines()
    note = [line for line in err if "takes no top-k" in line]
    assert len(note) == 1 and "the paper's top-k 50 cannot be applied" in note[0]
    assert "Unexpected fields in the request: {'top_k'}" in note[0]
    # the same answer for both samples of every prompt at temperature 0.7: said once
    same = [line for line in err if "samples identical" in line]
    assert len(same) == 1 and "3 prompt(s)" in same[0]
    # finish_reason "stop", no stop text in the answer: a stop and an end-of-text look alike
    assert {r.stopped_by for r in results} == {"unknown"}


def test_a_refusal_naming_no_field_we_can_drop_is_an_error() -> None:
    server = picky_server(STANDARD - {"stop"}, lambda body: "x")
    try:
        with pytest.raises(UserError, match=r"refused the request \(422\): Unexpected fields in the request"):
            list(ServerBackend(options(server.url)).generate(SAMPLES[:1], GenerationConfig()))
    finally:
        server.close()


def test_samples_of_a_prompt_go_out_together_first_one_ahead() -> None:
    server = picky_server(STANDARD | {"top_k"}, lambda body: " ok")
    shuffled = [SAMPLES[i] for i in (0, 2, 4, 1, 3, 5)]  # all first samples, then all second samples
    try:
        chunks = list(
            ServerBackend(options(server.url, concurrency=4)).generate(shuffled, GenerationConfig())
        )
    finally:
        server.close()
    prompts = [b["prompt"] for b in server.requests]
    for prompt in {r.prompt for r in SAMPLES}:
        assert prompts.count(prompt) == 2
    first_samples = {r.prompt: r.seed % 2**31 for r in SAMPLES if r.sample == 0}
    seen: set[str] = set()
    for body in server.requests:  # a prompt's first sample is always sent before its second one
        assert body["prompt"] in seen or body["seed"] == first_samples[body["prompt"]]
        seen.add(body["prompt"])
    results = [r for c in chunks for r in c]
    assert all(0.04 < r.seconds < 5 for r in results)  # each row its own time, not a share of the chunk


def test_stop_kind_reads_the_text_and_the_servers_fields() -> None:
    from icalign_nb.generation.server_backend import UNKNOWN, stopped_by_of

    assert (
        stopped_by_of("stop", UNKNOWN, cut=True, has_stops=True) == "stop"
    )  # the stop text was in the answer
    assert stopped_by_of("stop", "\nQuestion:", cut=False, has_stops=True) == "stop"  # vLLM names it
    assert stopped_by_of("stop", None, cut=False, has_stops=True) == "eos"  # vLLM: None is end-of-text
    assert stopped_by_of("stop", UNKNOWN, cut=False, has_stops=True) == "unknown"
    assert stopped_by_of("stop", UNKNOWN, cut=False, has_stops=False) == "eos"
    assert stopped_by_of("length", UNKNOWN, cut=False, has_stops=True) == "length"


def test_the_servers_reason_is_shown_for_fastapi_validation_errors() -> None:
    from icalign_nb.endpoints import server_reason

    class Refusal(Exception):
        body = {"detail": [{"loc": ["body", "top_k"], "msg": "Extra inputs are not permitted", "type": "x"}]}

    assert server_reason(Refusal()) == "body.top_k: Extra inputs are not permitted"
