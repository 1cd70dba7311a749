"""Any OpenAI-compatible completions server (vLLM, TGI, llama.cpp): async, bounded, retried.

Retries are the openai client's own (429, 408/409, 5xx, timeouts, dropped connections; exponential
backoff with jitter, honouring Retry-After), up to `max_retries` per request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import time
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass, field

from ..endpoints import redact, retries_shown, server_reason
from ..errors import UserError, first_line
from ..retrieval.prompts import clean_answer
from .types import GenerationConfig, Request, Result

BASE_URL_ENV = ("ICALIGN_BASE_URL", "OPENAI_BASE_URL")
API_KEY_ENV = ("ICALIGN_API_KEY", "OPENAI_API_KEY")


@dataclass(frozen=True)
class ServerOptions:
    """Where the server is and how hard to push it; the key is held in memory only."""

    base_url: str
    served_model: str
    api_key: str = field(default="EMPTY", repr=False)
    concurrency: int = 8
    max_retries: int = 6
    timeout: float = 600.0  # seconds per request
    chunk_size: int = 64  # results are saved after each chunk

    @classmethod
    def from_env(
        cls, served_model: str, base_url: str | None = None, api_key: str | None = None, **kwargs: object
    ) -> ServerOptions:
        """Options with the base URL and key from arguments, else ICALIGN_*/OPENAI_* variables."""
        base_url = base_url or next((os.environ[v] for v in BASE_URL_ENV if os.environ.get(v)), None)
        if not base_url:
            raise UserError("the openai backend needs a server: pass --base-url or set ICALIGN_BASE_URL")
        api_key = api_key or next((os.environ[v] for v in API_KEY_ENV if os.environ.get(v)), "EMPTY")
        if int(kwargs.get("concurrency", 1)) < 1:
            raise UserError("concurrency must be >= 1")
        return cls(base_url=base_url, served_model=served_model, api_key=api_key, **kwargs)


def request_body(request: Request, config: GenerationConfig, served_model: str) -> dict:
    """Arguments of `completions.create` for one item (top_k goes in the body as vLLM/llama.cpp read it)."""
    body: dict = {
        "model": served_model,
        "prompt": request.prompt,
        "max_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "seed": request.seed % (2**31),
        "n": 1,
    }
    if request.stop:
        body["stop"] = list(request.stop)
    if config.effective_top_k:
        body["extra_body"] = {"top_k": config.effective_top_k}
    return body


UNKNOWN = object()  # the server did not say which stop matched


def stop_kind(finish_reason: str | None, stop_reason: object, cut: bool, has_stops: bool) -> str:
    """stop|eos|length from the server's finish reason (vLLM also says which stop matched, None = eos)."""
    if cut or isinstance(stop_reason, str):
        return "stop"
    if finish_reason == "length":
        return "length"
    if stop_reason is UNKNOWN:
        return "stop" if has_stops else "eos"
    return "eos"


def run_sync(coro: Awaitable) -> object:
    """Run a coroutine to completion, also from inside a running loop (a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class ServerBackend:
    """Generation through `/v1/completions` with the openai client, many requests in flight."""

    name = "openai"

    def __init__(self, options: ServerOptions) -> None:
        self.options = options

    def generate(self, requests: Sequence[Request], config: GenerationConfig) -> Iterator[list[Result]]:
        """Send chunks of requests concurrently; yield each chunk once all of it has answered."""
        size = max(self.options.chunk_size, self.options.concurrency)
        with retries_shown(f"server {self.options.base_url}"):
            for i in range(0, len(requests), size):
                yield run_sync(self._chunk(list(requests[i : i + size]), config))

    async def _chunk(self, chunk: list[Request], config: GenerationConfig) -> list[Result]:
        """All requests of a chunk, at most `concurrency` at a time."""
        from openai import AsyncOpenAI

        start = time.perf_counter()
        gate = asyncio.Semaphore(self.options.concurrency)
        async with AsyncOpenAI(
            base_url=self.options.base_url,
            api_key=self.options.api_key,
            max_retries=self.options.max_retries,
            timeout=self.options.timeout,
        ) as client:
            tasks = [asyncio.create_task(self._one(client, gate, r, config)) for r in chunk]
            try:
                answers = await asyncio.gather(*tasks)
            finally:  # one failure stops the others before the client closes under them
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        share = (time.perf_counter() - start) / len(chunk)
        return [Result(r, a, p, g, how, share) for r, (a, p, g, how) in zip(chunk, answers, strict=True)]

    async def _one(
        self, client: object, gate: asyncio.Semaphore, request: Request, config: GenerationConfig
    ) -> tuple[str, int, int, str]:
        """One completion (the client retries 429, 5xx, timeouts and dropped connections; a reply that
        is not a completion is asked for again as often)."""
        import openai

        url, body, text = self.options.base_url, request_body(request, config, self.options.served_model), ""
        for _ in range(self.options.max_retries + 1):
            try:
                async with gate:
                    raw = await client.completions.with_raw_response.create(**body)
            except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError) as exc:
                raise UserError(
                    f"server {url} still failing after {self.options.max_retries} retries: "
                    f"{server_reason(exc)}"
                ) from None
            except openai.APIStatusError as exc:
                raise UserError(
                    f"server {url} refused the request ({exc.status_code}): {server_reason(exc)}"
                ) from None
            text = raw.http_response.text
            parsed = parse_completion(text, request)
            if parsed is not None:
                return parsed
        raise UserError(f"server {url} did not answer with a completion: {redact(first_line(text, 200))}")


def parse_completion(body: str, request: Request) -> tuple[str, int, int, str] | None:
    """(answer, prompt tokens, generated tokens, stop kind) of a completion body; None if it is not one."""
    try:
        data = json.loads(body)
        choice = data["choices"][0]
        text = choice.get("text") or ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    if not isinstance(text, str):
        return None
    answer, cut = clean_answer(text, request.stop)
    how = stop_kind(choice.get("finish_reason"), choice.get("stop_reason", UNKNOWN), cut, bool(request.stop))
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    n_prompt = usage.get("prompt_tokens") or len(request.prompt_ids)
    n_gen = usage.get("completion_tokens") or 0
    return answer, int(n_prompt), int(n_gen), how
