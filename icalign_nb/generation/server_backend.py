"""Any OpenAI-compatible completions server (vLLM, TGI, llama.cpp, `transformers serve`): async, bounded,
retried.

Retries are the openai client's own (429, 408/409, 5xx, timeouts, dropped connections; exponential
backoff with jitter, honouring Retry-After), up to `max_retries` per request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import sys
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
    bos: bool | None = None  # whether prompts start with BOS (the run's rule); None: as the server does
    tokenizer_adds_bos: bool | None = None  # whether the model's tokenizer adds BOS to a text by default

    @classmethod
    def from_env(
        cls, served_model: str, base_url: str | None = None, api_key: str | None = None, **kwargs: object
    ) -> ServerOptions:
        """Options with the base URL and key from arguments, else ICALIGN_*/OPENAI_* variables."""
        base_url = base_url or next((os.environ[v] for v in BASE_URL_ENV if os.environ.get(v)), None)
        if not base_url:
            raise UserError("the openai backend needs a server: a base URL (base_url) or ICALIGN_BASE_URL")
        api_key = api_key or next((os.environ[v] for v in API_KEY_ENV if os.environ.get(v)), "EMPTY")
        if int(kwargs.get("concurrency", 1)) < 1:
            raise UserError("concurrency must be >= 1")
        return cls(base_url=base_url, served_model=served_model, api_key=api_key, **kwargs)


# Ways of sending the paper's top-k, tried in order until the server takes one: vLLM, llama.cpp and
# TGI read a `top_k` field; `transformers serve` refuses it (422) but takes a `generation_config` JSON
# string, which must also turn sampling on (it samples only when do_sample is set).
TOP_K_WAYS = ("top_k", "generation_config", None)
# Ways of sending a prompt so that the server sees the run's token ids, tried in order: the ids
# themselves (vLLM, llama.cpp; exact whatever the server's tokenizer version), the text with vLLM's
# `add_special_tokens` set by the run's BOS rule (vLLM's completions add BOS by default), the bare text
# (the server's tokenizer then decides BOS: said in one line where that may differ from the run's rule).
PROMPT_WAYS = ("ids", "add_special_tokens", "text")
OPTIONAL_FIELDS = ("seed",)  # standard but not universal: dropped (once, said in a line) when refused


def request_body(
    request: Request,
    config: GenerationConfig,
    served_model: str,
    top_k_way: str | None = "top_k",
    prompt_way: str = "text",
    bos: bool | None = None,
) -> dict:
    """Arguments of `completions.create` for one item; the top-k and the prompt go the ways the server
    takes them (`prompt_way` `ids` needs the request's ids, `add_special_tokens` the run's `bos`)."""
    ids = prompt_way == "ids" and bool(request.prompt_ids)
    body: dict = {
        "model": served_model,
        "prompt": list(request.prompt_ids) if ids else request.prompt,
        "max_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "seed": request.seed % (2**31),
        "n": 1,
    }
    if request.stop:
        body["stop"] = list(request.stop)
    extra: dict = {}
    k = config.effective_top_k
    if k and top_k_way == "top_k":
        extra["top_k"] = k
    elif k and top_k_way == "generation_config":
        wanted = {"top_k": k, "do_sample": not config.greedy, "max_new_tokens": config.max_new_tokens}
        extra["generation_config"] = json.dumps(wanted)
    if prompt_way == "add_special_tokens" and bos is not None:
        extra["add_special_tokens"] = bos
    if extra:
        body["extra_body"] = extra
    return body


def refused_fields(reason: str, body: dict) -> list[str]:
    """The optional fields of `body` that a server's refusal names (e.g. "Unexpected fields in the
    request: {'top_k'}", a validation error located at `top_k`, or "prompt must be a string" for ids)."""
    sent = [*body.get("extra_body", {}), *(f for f in OPTIONAL_FIELDS if f in body)]
    if isinstance(body.get("prompt"), list):
        sent.append("prompt")
    return [f for f in sent if re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", reason)]


UNKNOWN = object()  # the server did not say which stop matched


def stopped_by_of(finish_reason: str | None, stop_reason: object, cut: bool, has_stops: bool) -> str:
    """stop|eos|length|unknown from the server's finish reason and the text.

    The text tells a stop when it still holds a stop string (`transformers serve` leaves it in; the
    answer is cut there). vLLM says which stop matched (`stop_reason`: a string, or None for the
    end-of-text token). Servers that strip the stop string and say only `finish_reason: "stop"` (the
    OpenAI API, llama.cpp) make a stop and an end-of-text look alike: that is saved as `unknown`.
    """
    if cut or isinstance(stop_reason, str):
        return "stop"
    if finish_reason is None:  # the server did not say: not taken for an end of text
        return "unknown"
    if finish_reason == "length":
        return "length"
    if stop_reason is UNKNOWN and has_stops:
        return "unknown"
    return "eos"


def samples_together(requests: Sequence[Request]) -> list[Request]:
    """The requests with the samples of each prompt next to each other (first-seen prompt order)."""
    first: dict[str, int] = {}
    for i, r in enumerate(requests):
        first.setdefault(r.prompt, i)
    return sorted(requests, key=lambda r: first[r.prompt])


def identical_samples(results: Sequence[Result]) -> int:
    """How many prompts with two or more samples got the very same answer for all of them."""
    by_prompt: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for r in results:
        by_prompt.setdefault(r.request.prompt, set()).add(r.response)
        counts[r.request.prompt] = counts.get(r.request.prompt, 0) + 1
    return sum(1 for p, answers in by_prompt.items() if counts[p] > 1 and len(answers) == 1)


def run_sync(coro: Awaitable) -> object:
    """Run a coroutine to completion, also from inside a running loop (a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def note(line: str) -> None:
    """One line on stderr that does not tear a progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)


class ServerBackend:
    """Generation through `/v1/completions` with the openai client, many requests in flight.

    The samples of one prompt go out together, the first one ahead of the others, so that a server
    with a prefix cache (vLLM, llama.cpp, SGLang) reads the shared prompt once. Fields a server refuses
    are learnt from its 400/422 reply and left out from then on (said once, in one line).
    """

    name = "openai"

    def __init__(self, options: ServerOptions, tokenizer: object | None = None) -> None:
        self.options = options
        self.tokenizer = tokenizer  # counts generated tokens where a server's reply has no usage
        self.top_k_way: str | None = TOP_K_WAYS[0]
        self.dropped: set[str] = set()
        self.warned_identical = False
        self.top_k_refusal = ""  # the server's words when it first refused the top-k
        self.prompt_way = PROMPT_WAYS[0] if options.bos is not None else "text"

    def generate(self, requests: Sequence[Request], config: GenerationConfig) -> Iterator[list[Result]]:
        """Send chunks of requests concurrently; yield each chunk once all of it has answered."""
        size = max(self.options.chunk_size, self.options.concurrency)
        ordered = samples_together(requests)
        with retries_shown(f"server {self.options.base_url}"):
            for i in range(0, len(ordered), size):
                results = run_sync(self._chunk(ordered[i : i + size], config))
                self._check_sampling(results, config)
                yield results

    def count_tokens(self, text: str) -> int:
        """Tokens of a completion's text by the run's tokenizer (for a server that reports no usage)."""
        if self.tokenizer is None:
            raise UserError(
                f"server {self.options.base_url} reports no token counts (no usage.completion_tokens) "
                "and no tokenizer was given to count them"
            )
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def body(self, request: Request, config: GenerationConfig) -> dict:
        """The request as this server takes it (refused optional fields left out)."""
        options = self.options
        body = request_body(
            request, config, options.served_model, self.top_k_way, self.prompt_way, options.bos
        )
        for name in self.dropped:
            body.pop(name, None)
        return body

    def refused(self, fields: Sequence[str], reason: str, config: GenerationConfig) -> None:
        """The server refused `fields`: send the top-k another way (or not at all) and drop the rest."""
        where = f"server {self.options.base_url}"
        for name in fields:
            if name in ("top_k", "generation_config") and name == self.top_k_way:
                self.top_k_refusal = self.top_k_refusal or reason
                self.top_k_way = TOP_K_WAYS[TOP_K_WAYS.index(name) + 1]
                if self.top_k_way is None:
                    note(
                        f"{where} takes no top-k ({self.top_k_refusal}): the paper's top-k "
                        f"{config.effective_top_k} cannot be applied; sampling with temperature "
                        f"{config.temperature} and top_p {config.top_p} only"
                    )
            elif (name, self.prompt_way) in (("prompt", "ids"), ("add_special_tokens", "add_special_tokens")):
                self._next_prompt_way(reason)
            elif name in OPTIONAL_FIELDS and name not in self.dropped:
                self.dropped.add(name)
                note(f"{where} refused '{name}' ({reason}); requests are sent without it")

    def _next_prompt_way(self, reason: str) -> None:
        """The server refused the prompt's way: the text with `add_special_tokens` where the server's
        default would differ from the run's BOS rule, else the bare text (said in a line if it may)."""
        options = self.options
        exact = options.bos == options.tokenizer_adds_bos
        if self.prompt_way == "ids" and not exact:
            self.prompt_way = "add_special_tokens"
            return
        self.prompt_way = "text"
        if not exact:
            rule = "BOS first" if options.bos else "no BOS"
            note(
                f"server {options.base_url} takes neither token ids nor 'add_special_tokens' ({reason}): "
                f"prompts go as text and its tokenizer decides BOS (this run's rule: {rule})"
            )

    def _check_sampling(self, results: Sequence[Result], config: GenerationConfig) -> None:
        """Warn once when a sampling server returned the same answer for every sample of a prompt."""
        same = identical_samples(results)
        if same and not config.greedy and not self.warned_identical:
            self.warned_identical = True
            note(
                f"server {self.options.base_url}: all samples identical for {same} prompt(s) at "
                f"temperature {config.temperature}: the server may not be sampling (transformers serve "
                "samples only when do_sample is set: keep top-k on, or set do_sample in the model's "
                "generation_config.json)"
            )

    async def _chunk(self, chunk: list[Request], config: GenerationConfig) -> list[Result]:
        """All requests of a chunk, at most `concurrency` at a time; a prompt's first sample leads."""
        from openai import AsyncOpenAI

        gate = asyncio.Semaphore(self.options.concurrency)
        async with AsyncOpenAI(
            base_url=self.options.base_url,
            api_key=self.options.api_key,
            max_retries=self.options.max_retries,
            timeout=self.options.timeout,
        ) as client:
            leaders: dict[str, asyncio.Event] = {}
            tasks = []
            for r in chunk:
                lead = leaders.get(r.prompt)
                if lead is None:
                    leaders[r.prompt] = done = asyncio.Event()
                    tasks.append(asyncio.create_task(self._one(client, gate, r, config, done=done)))
                else:
                    tasks.append(asyncio.create_task(self._one(client, gate, r, config, after=lead)))
            try:
                return list(await asyncio.gather(*tasks))
            finally:  # one failure stops the others before the client closes under them
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(
        self,
        client: object,
        gate: asyncio.Semaphore,
        request: Request,
        config: GenerationConfig,
        after: asyncio.Event | None = None,
        done: asyncio.Event | None = None,
    ) -> Result:
        """One completion (the client retries 429, 5xx, timeouts and dropped connections; a reply that
        is not a completion is asked for again as often; a refused optional field is left out)."""
        import openai

        url, text, adapted = self.options.base_url, "", 0
        try:
            if after is not None:
                await after.wait()
            attempts = 0
            while attempts <= self.options.max_retries:
                body = self.body(request, config)
                try:
                    async with gate:
                        start = time.perf_counter()
                        raw = await client.completions.with_raw_response.create(**body)
                        seconds = time.perf_counter() - start
                except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError) as exc:
                    raise UserError(
                        f"server {url} still failing after {self.options.max_retries} retries: "
                        f"{server_reason(exc)}"
                    ) from None
                except openai.APIStatusError as exc:
                    reason = server_reason(exc)
                    fields = refused_fields(reason, body) if exc.status_code in (400, 422) else []
                    if fields and adapted < len(TOP_K_WAYS) + len(PROMPT_WAYS) + len(OPTIONAL_FIELDS):
                        adapted += 1
                        self.refused(fields, f"{exc.status_code}: {reason}", config)
                        continue
                    raise UserError(
                        f"server {url} refused the request ({exc.status_code}): {reason}"
                    ) from None
                attempts += 1
                text = raw.http_response.text
                parsed = parse_completion(text, request)
                if parsed is not None:
                    answer, n_prompt, n_gen, stopped_by, raw_text = parsed
                    if n_gen is None:
                        n_gen = self.count_tokens(raw_text)
                    return Result(request, answer, n_prompt, n_gen, stopped_by, seconds)
        finally:
            if done is not None:
                done.set()
        raise UserError(f"server {url} did not answer with a completion: {redact(first_line(text, 200))}")


def parse_completion(body: str, request: Request) -> tuple[str, int, int | None, str, str] | None:
    """(answer, prompt tokens, generated tokens, stop kind, text as sent) of a completion body; None if
    it is not one. Generated tokens are None where the reply's usage does not count them."""
    try:
        data = json.loads(body)
        choice = data["choices"][0]
        text = choice["text"]  # a reply without it (e.g. a chat completion) is not an answer, not ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    if not isinstance(text, str):
        return None
    answer, cut = clean_answer(text, request.stop)
    reason = choice.get("stop_reason", UNKNOWN)
    stopped_by = stopped_by_of(choice.get("finish_reason"), reason, cut, bool(request.stop))
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    n_prompt = usage.get("prompt_tokens") or len(request.prompt_ids)
    n_gen = usage.get("completion_tokens")
    return answer, int(n_prompt), None if n_gen is None else int(n_gen), stopped_by, text
