"""The vLLM backend (optional extra `[vllm]`, needs a CUDA GPU): same interface as transformers."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ..errors import UserError
from ..retrieval.prompts import clean_answer
from .types import GenerationConfig, Request, Result

if TYPE_CHECKING:
    from types import ModuleType

INSTALL_HINT = (
    "vLLM is not installed: pip install 'icalign-nb[vllm]' (needs a CUDA GPU), or use --backend transformers"
)


def import_vllm() -> ModuleType:
    """The vllm module, or one clear line saying how to get it."""
    try:
        import vllm
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return vllm


def sampling_kwargs(request: Request, config: GenerationConfig) -> dict:
    """`SamplingParams` arguments for one item: the paper's sampling, its stops, its own seed."""
    return {
        "n": 1,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.effective_top_k or -1,  # -1: no top-k filter
        "max_tokens": config.max_new_tokens,
        "stop": list(request.stop) or None,
        "include_stop_str_in_output": False,
        "skip_special_tokens": True,
        "seed": request.seed,
    }


def prompt_input(request: Request) -> dict:
    """The prompt as token ids exactly as the run built them (no special tokens but BOS by the model's
    rule: none for Llama-2, as the reference code)."""
    if not request.prompt_ids:
        raise ValueError(f"request {request.key} has no prompt token ids")
    return {"prompt_token_ids": list(request.prompt_ids)}


def to_result(request: Request, output: object, seconds: float) -> Result:
    """A vLLM `RequestOutput` as a Result: stop reason from vLLM, text cut again as a safeguard."""
    choice = output.outputs[0]
    answer, cut = clean_answer(choice.text, request.stop)
    if choice.finish_reason == "length" and not cut:
        stopped_by = "length"
    elif cut or isinstance(getattr(choice, "stop_reason", None), str):
        stopped_by = "stop"
    else:
        stopped_by = "eos"
    return Result(request, answer, len(output.prompt_token_ids), len(choice.token_ids), stopped_by, seconds)


class VLLMBackend:
    """Generation with vLLM's offline `LLM` engine (continuous batching, tensor parallel)."""

    name = "vllm"

    def __init__(
        self, model_name: str, tensor_parallel_size: int = 1, chunk_size: int = 256, dtype: str = "auto"
    ) -> None:
        from ..models.builds import local_dir
        from ..models.loading import accelerator_dtype

        self.vllm = import_vllm()
        self.chunk_size = chunk_size
        self.dtype = accelerator_dtype(dtype)  # bf16 on cards that compute in it, else fp16
        self.llm = self.vllm.LLM(
            model=local_dir(model_name), tensor_parallel_size=tensor_parallel_size, dtype=self.dtype
        )

    def generate(self, requests: Sequence[Request], config: GenerationConfig) -> Iterator[list[Result]]:
        """Hand vLLM chunks of requests (it schedules them itself); yield each finished chunk."""
        for i in range(0, len(requests), self.chunk_size):
            chunk = list(requests[i : i + self.chunk_size])
            start = time.perf_counter()
            params = [self.vllm.SamplingParams(**sampling_kwargs(r, config)) for r in chunk]
            outputs = self.llm.generate([prompt_input(r) for r in chunk], params, use_tqdm=False)
            share = (time.perf_counter() - start) / len(chunk)
            yield [to_result(r, o, share) for r, o in zip(chunk, outputs, strict=True)]
