"""The OpenAI-compatible server backend over real HTTP, against a local server that fails first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scripted_server import ScriptedServer

from icalign_nb.errors import UserError
from icalign_nb.generation.server_backend import ServerBackend, ServerOptions, request_body
from icalign_nb.generation.types import GenerationConfig, Request
from icalign_nb.retrieval.prompts import PAPER_STOP


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
    with pytest.raises(UserError, match="--base-url"):
        ServerOptions.from_env("m")
    monkeypatch.setenv("ICALIGN_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ICALIGN_API_KEY", "sk-env")
    opts = ServerOptions.from_env("m")
    assert opts.base_url.endswith(":9/v1") and opts.api_key == "sk-env" and "sk-env" not in repr(opts)


def test_a_run_through_the_server_never_saves_the_key(server: ScriptedServer, tmp_path) -> None:
    from icalign_nb.generation.rundir import generations_frame
    from icalign_nb.generation.runs import RunOptions, RunSpec, run_generation
    from icalign_nb.retrieval.settings import RetrievalSettings

    spec = RunSpec(
        model="tiny-random",
        backend="openai",
        retrieval=RetrievalSettings(preset="zero-shot", limit=3),
        served_model="tiny",
        generation=GenerationConfig(max_new_tokens=16, samples=2),
    )
    opts = RunOptions(base_url=server.url, api_key="sk-secret-123", batch_size=4, progress=False)
    summary = run_generation(tmp_path / "run", spec, opts)
    assert summary.generated == 6 and summary.stopped_by == {"stop": 6}
    frame = generations_frame(tmp_path / "run")
    assert frame.height == 6 and frame["response"].str.starts_with("answer to").all()
    assert all("sk-secret" not in p.read_text() for p in (tmp_path / "run").iterdir())
    assert {b["model"] for b in server.requests} == {"tiny"}
