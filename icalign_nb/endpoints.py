"""What both OpenAI-compatible clients (the generation server backend and the chat judge) share:
the client's retries shown as they happen, the server's own reason for a refusal, no secrets in
messages."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator

from .errors import first_line

_SECRET = re.compile(
    r"(sk-[A-Za-z0-9_\-]{4})[A-Za-z0-9_\-]+|(Bearer\s+)\S+|((?:api[_-]?key|token)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+",
    re.I,
)


def redact(text: str) -> str:
    """The text with anything that looks like a key or token masked."""
    return _SECRET.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "…", text)


def server_reason(exc: BaseException) -> str:
    """One line of what the server said (its JSON error message or FastAPI's `detail`, else its body,
    else the exception): e.g. "Unexpected fields in the request: {'top_k'}"."""
    response = getattr(exc, "response", None)
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail") or body.get("error")
        if isinstance(message, dict):
            message = message.get("message")
        if isinstance(message, list):  # FastAPI validation errors: [{"loc": [...], "msg": ...}, ...]
            message = "; ".join(_validation_error(m) for m in message)
        if message:
            return redact(first_line(str(message), 300))
    text = getattr(response, "text", "") if response is not None else ""
    return redact(first_line(text or str(exc), 300))


def _validation_error(item: object) -> str:
    """`body.top_k: Extra inputs are not permitted` from one FastAPI/pydantic error record."""
    if not isinstance(item, dict):
        return str(item)
    where = ".".join(str(part) for part in item.get("loc", []))
    return f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", item))


class _RetryLines(logging.Handler):
    """Turns the openai client's "Retrying request" log records into one stderr line each."""

    def __init__(self, where: str) -> None:
        super().__init__(logging.INFO)
        self.where = where

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Retrying request"):
            from tqdm.auto import tqdm

            tqdm.write(
                f"{self.where}: {message.lower().replace('retrying request', 'retrying')}", file=sys.stderr
            )


@contextlib.contextmanager
def retries_shown(where: str) -> Iterator[None]:
    """While inside, every retry the openai client makes is printed as a line naming `where`."""
    logger = logging.getLogger("openai")
    handler, level = _RetryLines(where), logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
