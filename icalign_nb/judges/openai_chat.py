"""The OpenAI-compatible chat judge: async requests under a concurrency limit, retries with backoff.

Retried: 429, 5xx, timeouts and dropped connections, up to `max_retries` times, waiting
`backoff * 2**attempt` seconds (capped at `max_backoff`, with jitter) or the server's
`Retry-After` when it sends one. A request that still fails is reported as a failed reply
(counted as invalid, not cached, so a re-run tries it again). Authentication or a wrong model
name stops the run with one line. The API key is read from the environment only.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import UserError
from ..files import sha256_text
from .cache import Comparison, Reply
from .parse import parse_scores
from .prompts import JudgePrompt
from .spec import JudgeSpec


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a failed request."""

    max_retries: int = 6
    backoff: float = 1.0
    max_backoff: float = 60.0
    timeout: float = 120.0


def _retry_after(exc: Exception) -> float | None:
    """Seconds the server asked us to wait (`Retry-After`), if it said."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@dataclass
class OpenAIJudge:
    """Pairwise judging over any OpenAI-compatible `/chat/completions` endpoint."""

    spec: JudgeSpec
    prompt: JudgePrompt
    concurrency: int = 8
    retry: RetryPolicy = RetryPolicy()

    def messages(self, c: Comparison) -> list[dict[str, str]]:
        """The chat messages of one comparison."""
        return self.prompt.messages(c.question, c.answer_1, c.answer_2)

    def prompt_hash(self, c: Comparison) -> str:
        """Hash of exactly what is sent (messages), the prompt part of the cache key."""
        return sha256_text(json.dumps(self.messages(c), ensure_ascii=False))

    def _client(self) -> object:
        from openai import AsyncOpenAI

        base_url = self.spec.base_url or os.environ.get("OPENAI_BASE_URL")
        key = os.environ.get(self.spec.api_key_env)
        if not key:
            if base_url is None:
                raise UserError(
                    f"judge {self.spec.name}: set {self.spec.api_key_env} in the environment "
                    "(or --base-url for a local server that needs no key)"
                )
            key = "EMPTY"  # local OpenAI-compatible servers accept any key
        return AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=self.retry.timeout)

    def judge(self, items: Sequence[Comparison], done: Callable[[int, Reply], None]) -> None:
        """Judge comparisons concurrently; `done(index, reply)` is called as each one finishes."""
        if items:
            asyncio.run(self._judge_all(items, done))

    async def _judge_all(self, items: Sequence[Comparison], done: Callable[[int, Reply], None]) -> None:
        client = self._client()
        gate = asyncio.Semaphore(max(1, self.concurrency))

        async def one(index: int, item: Comparison) -> None:
            async with gate:
                reply = await self._ask(client, self.messages(item))
            done(index, reply)

        try:
            tasks = [asyncio.create_task(one(i, item)) for i, item in enumerate(items)]
            await asyncio.gather(*tasks)
        finally:
            await client.close()

    async def _ask(self, client: object, messages: list[dict[str, str]]) -> Reply:
        import openai

        last = ""
        for attempt in range(self.retry.max_retries + 1):
            try:
                response = await client.chat.completions.create(
                    model=self.spec.model,
                    messages=messages,
                    temperature=self.spec.temperature,
                    max_tokens=self.spec.max_tokens,
                )
                text = response.choices[0].message.content or ""
                return Reply(text, parse_scores(text))
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
                raise UserError(f"judge {self.spec.name}: {type(exc).__name__}: {_short(exc)}") from None
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError) as exc:
                last = f"{type(exc).__name__}: {_short(exc)}"
                wait = _retry_after(exc)
            except openai.APIStatusError as exc:
                if exc.status_code < 500 and exc.status_code != 429:
                    return Reply(
                        f"[judge request failed: {exc.status_code} {_short(exc)}]", None, failed=True
                    )
                last, wait = f"{exc.status_code}: {_short(exc)}", _retry_after(exc)
            if attempt == self.retry.max_retries:
                break
            if wait is None:
                wait = min(self.retry.max_backoff, self.retry.backoff * 2**attempt)
                wait *= 0.5 + random.random() / 2  # jitter so parallel requests spread out
            await asyncio.sleep(wait)
        return Reply(
            f"[judge request failed after {self.retry.max_retries} retries: {last}]", None, failed=True
        )


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
