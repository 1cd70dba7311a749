"""Retrying calls to OpenAI-compatible servers: which failures get another try, and how long to wait.

429s, 5xx replies, timeouts and dropped connections are retried up to `max_retries` times, waiting
`backoff * 2**attempt` seconds (with jitter, so parallel requests spread out), at least what the
server's `Retry-After` asks, at most `max_backoff`. Every other error, and the last one, is raised
for the caller to report.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a failed request."""

    max_retries: int = 6
    backoff: float = 1.0  # the first retry waits about this many seconds, doubling each time
    max_backoff: float = 60.0
    timeout: float = 120.0  # seconds per request

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number `attempt + 1`."""
        wait = self.backoff * (2**attempt) * random.uniform(0.5, 1.0)
        if retry_after:
            with contextlib.suppress(ValueError):
                wait = max(wait, float(retry_after))
        return min(wait, self.max_backoff)


def retryable() -> tuple[type[Exception], ...]:
    """The openai client's errors worth another try."""
    import openai

    return (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy) -> T:
    """Await `call()`, retrying the failures `retryable()` names; the last failure is raised."""
    errors = retryable()
    for attempt in range(policy.max_retries + 1):
        try:
            return await call()
        except errors as exc:
            if attempt == policy.max_retries:
                raise
            response = getattr(exc, "response", None)
            await asyncio.sleep(
                policy.delay(attempt, response.headers.get("retry-after") if response is not None else None)
            )
    raise AssertionError("unreachable")
