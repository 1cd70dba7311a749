"""A local OpenAI-compatible endpoint for tests: scripted failures first, then the given replies.

A reply is a JSON object, or raw bytes (sent as they are with status 200, e.g. an HTML page or broken
JSON, as misbehaving servers do), or (status, JSON object) for a server that refuses the request."""

from __future__ import annotations

import contextlib
import json
import random
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _QuietServer(ThreadingHTTPServer):
    """A client that hung up early (a judge stopping at the first refusal) is not a server error."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class ScriptedServer:
    """Serves POSTs on 127.0.0.1: each status in `failures` once, then `reply(body)` (after a random
    wait of up to `delay` seconds, so concurrent answers finish out of order); records every request."""

    def __init__(
        self,
        reply: Callable[[dict], dict | bytes | tuple[int, dict]],
        failures: tuple[int, ...] = (),
        delay: float = 0.0,
    ) -> None:
        self.reply, self.failures, self.delay = reply, list(failures), delay
        self.requests: list[dict] = []
        self.auth: list[str] = []
        self.lock = threading.Lock()
        self.httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The OpenAI-style base URL."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> ScriptedServer:
        """Start serving (close it when done, or use the server as a context manager)."""
        self.thread.start()
        return self

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers["Content-Length"])
                data = self.rfile.read(length)
                if len(data) < length:  # the client hung up while sending (a run stopping at an error)
                    return
                body = json.loads(data)
                with server.lock:
                    server.requests.append(body)
                    server.auth.append(self.headers.get("Authorization", ""))
                    status = server.failures.pop(0) if server.failures else 200
                if status != 200:
                    self._send(status, {"error": {"message": f"scripted {status}", "type": "test"}})
                    return
                time.sleep(random.uniform(0, server.delay))
                reply = server.reply(body)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
                    self._send(*(reply if isinstance(reply, tuple) else (200, reply)))

            def _send(self, status: int, payload: dict | bytes) -> None:
                raw = isinstance(payload, bytes)
                data = payload if raw else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html" if raw else "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status != 200:
                    self.send_header("retry-after-ms", "5")  # the openai client's retries wait 5 ms
                self.end_headers()
                self.wfile.write(data)

        return Handler


def completion_reply(text: str, finish_reason: str = "stop", usage: bool = True) -> dict:
    """A /v1/completions reply of one choice."""
    choice = {"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}
    reply = {"id": "c", "object": "text_completion", "choices": [choice]}
    if usage:
        reply["usage"] = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    return reply


def picky_server(accepted: set[str], answer: Callable[[dict], str], status: int = 422) -> ScriptedServer:
    """A started /v1/completions server that refuses fields it does not know with `status` naming them,
    as `transformers serve` does, and answers `answer(body)` after 50 ms (close it when done)."""

    def reply(body: dict) -> dict | tuple[int, dict]:
        unexpected = set(body) - accepted
        if unexpected:
            return status, {"detail": f"Unexpected fields in the request: {unexpected}"}
        time.sleep(0.05)
        return completion_reply(answer(body))

    return ScriptedServer(reply).start()
