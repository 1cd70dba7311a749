"""Choosing a generation backend by name: transformers (default), vLLM, or an OpenAI-compatible server."""

from __future__ import annotations

from ..errors import UserError
from .types import BACKENDS, Backend


def make_backend(name: str, model: str, options: dict | None = None) -> Backend:
    """A backend by name: transformers (default), vllm or openai (an OpenAI-compatible server)."""
    options = dict(options or {})
    if name == "transformers":
        from .transformers_backend import TOKEN_BUDGET, TransformersBackend

        return TransformersBackend(
            model,
            batch_size=options.get("batch_size"),
            device=options.get("device"),
            tokenizer=options.get("tokenizer"),
            dtype=options.get("dtype") or "auto",
            token_budget=options.get("batch_budget") or _device_budget(model, options) or TOKEN_BUDGET,
        )
    if name == "vllm":
        from .vllm_backend import VLLMBackend

        return VLLMBackend(
            model,
            tensor_parallel_size=options.get("tensor_parallel_size", 1),
            chunk_size=options.get("batch_size") or 256,
            dtype=options.get("dtype") or "auto",
        )
    if name == "openai":
        from .server_backend import ServerBackend, ServerOptions

        return ServerBackend(
            ServerOptions.from_env(
                served_model=options.get("served_model") or model,
                base_url=options.get("base_url"),
                api_key=options.get("api_key"),
                concurrency=options.get("concurrency", 8),
                max_retries=options.get("max_retries", 6),
                timeout=options.get("timeout", 600.0),
                chunk_size=options.get("batch_size") or 64,
                bos=options.get("bos"),
                tokenizer_adds_bos=options.get("tokenizer_adds_bos"),
            ),
            tokenizer=options.get("tokenizer"),
        )
    raise UserError(f"unknown backend '{name}'; backends: {', '.join(BACKENDS)}")


def _device_budget(model: str, options: dict) -> int | None:
    """The token budget that fits the CUDA cards' free memory beside the weights (said in one line);
    None off CUDA or without a settled dtype."""
    import sys

    from ..models.memory import cuda_token_budget

    plan = cuda_token_budget(model, options.get("device"), options.get("dtype") or "auto")
    if plan is None:
        return None
    print(f"{model} on {options.get('device') or 'cuda'}: {plan.describe()}", file=sys.stderr)
    return plan.budget
