"""The OpenAI-compatible chat judge: async requests under a concurrency limit, retries with backoff.

Failed requests are retried as `icalign_nb.retry` describes. A request that still fails is
reported as a failed reply (counted as invalid, not cached, so a re-run tries it again).
Authentication or a wrong model name stops the run with one line. The API key is read from the
environment only.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import UserError, first_line
from ..files import sha256_text
from ..retry import RetryPolicy, retryable, with_retries
from .cache import Comparison, Reply
from .parse import parse_scores
from .prompts import JudgePrompt
from .spec import JudgeSpec


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

        async def call() -> object:
            return await client.chat.completions.create(
                model=self.spec.model,
                messages=messages,
                temperature=self.spec.temperature,
                max_tokens=self.spec.max_tokens,
            )

        try:
            response = await with_retries(call, self.retry)
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
            raise UserError(f"judge {self.spec.name}: {type(exc).__name__}: {first_line(exc)}") from None
        except retryable() as exc:
            last = f"{type(exc).__name__}: {first_line(exc)}"
            return Reply(
                f"[judge request failed after {self.retry.max_retries} retries: {last}]", None, failed=True
            )
        except openai.APIStatusError as exc:
            return Reply(f"[judge request failed: {exc.status_code} {first_line(exc)}]", None, failed=True)
        text = response.choices[0].message.content or ""
        return Reply(text, parse_scores(text))
