"""The OpenAI-compatible chat judge: async requests under a concurrency limit.

Retries are the openai client's own (429, 408/409, 5xx, timeouts, dropped connections; exponential
backoff with jitter, honouring Retry-After), up to `max_retries` per request. What happens then:

- the endpoint cannot be reached, or keeps failing, or refuses the request (any HTTP error status,
  400 included): the run stops with one line naming the URL and the server's reason; every reply
  received so far is already in the judgment cache, and no judgments file is rewritten;
- the endpoint answers 200 with a body that is not a chat completion (malformed JSON, no choices,
  an HTML page): asked again up to `max_retries` times, then kept as an invalid reply with its raw
  text (counted, not cached, so a re-run asks again).

The API key is read from the environment only.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...endpoints import redact, retries_shown, server_reason
from ...errors import UserError, first_line
from ...files import sha256_text
from ..comparisons import Comparison, Reply
from ..parse import parse_scores
from ..prompts import JudgePrompt
from ..spec import JudgeSpec

if TYPE_CHECKING:
    from openai import AsyncOpenAI

DEFAULT_URL = "https://api.openai.com/v1"


def completion_text(body: str) -> str | None:
    """The reply text of a chat completion body, or None when the body is not one."""
    try:
        data = json.loads(body)
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


@dataclass
class OpenAIJudge:
    """Pairwise judging over any OpenAI-compatible `/chat/completions` endpoint."""

    spec: JudgeSpec
    prompt: JudgePrompt
    concurrency: int = 8
    max_retries: int = 6
    timeout: float = 120.0  # seconds per request

    @property
    def base_url(self) -> str:
        """The endpoint in force: the spec's, else OPENAI_BASE_URL, else OpenAI's."""
        return self.spec.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_URL

    def messages(self, c: Comparison) -> list[dict[str, str]]:
        """The chat messages of one comparison."""
        return self.prompt.messages(c.question, c.answer_1, c.answer_2)

    def prompt_hash(self, c: Comparison) -> str:
        """Hash of exactly what is sent (messages), the prompt part of the cache key."""
        return sha256_text(json.dumps(self.messages(c), ensure_ascii=False))

    def _client(self) -> AsyncOpenAI:
        from openai import AsyncOpenAI

        key = os.environ.get(self.spec.api_key_env)
        if not key:
            if self.base_url == DEFAULT_URL:
                raise UserError(
                    f"judge {self.spec.name}: set {self.spec.api_key_env} in the environment "
                    "(or a base URL, base_url, for a local server that needs no key)"
                )
            key = "EMPTY"  # local OpenAI-compatible servers accept any key
        return AsyncOpenAI(
            api_key=key, base_url=self.base_url, max_retries=self.max_retries, timeout=self.timeout
        )

    def judge(self, items: Sequence[Comparison], done: Callable[[int, Reply], None]) -> None:
        """Judge comparisons concurrently; `done(index, reply)` is called as each one finishes."""
        if items:
            with retries_shown(f"judge endpoint {self.base_url}"):
                asyncio.run(self._judge_all(items, done))

    async def _judge_all(self, items: Sequence[Comparison], done: Callable[[int, Reply], None]) -> None:
        client = self._client()
        gate = asyncio.Semaphore(max(1, self.concurrency))

        async def one(index: int, item: Comparison) -> None:
            async with gate:
                reply = await self._ask(client, self.messages(item))
            done(index, reply)

        tasks = [asyncio.create_task(one(i, item)) for i, item in enumerate(items)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.close()

    async def _ask(self, client: AsyncOpenAI, messages: list[dict[str, str]]) -> Reply:
        """One comparison: its reply, an invalid reply for a body that is not a completion, or a stop."""
        import openai

        body = ""
        for _ in range(self.max_retries + 1):
            try:
                response = await client.chat.completions.with_raw_response.create(
                    model=self.spec.model,
                    messages=messages,
                    temperature=self.spec.temperature,
                    max_tokens=self.spec.max_tokens,
                )
            except openai.APIStatusError as exc:
                reason = server_reason(exc)
                raise UserError(
                    f"judge endpoint {self.base_url} refused the request ({exc.status_code}): {reason}"
                ) from None
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                raise UserError(
                    f"judge endpoint {self.base_url} unreachable after {self.max_retries} retries "
                    f"({type(exc).__name__}: {redact(first_line(exc))}); the replies received so far are kept"
                ) from None
            body = response.http_response.text
            text = completion_text(body)
            if text is not None:
                return Reply(text, parse_scores(text))
        return Reply(f"[not a chat completion: {body[:500]}]", None, failed=True)
