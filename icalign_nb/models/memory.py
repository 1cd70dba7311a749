"""What a model needs in device memory: its weights, its key/value cache per token, and the token budget
that fits a CUDA device's free memory beside the weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UserError
from .builds import local_dir
from .loading import context_length, resolve_dtype

if TYPE_CHECKING:
    from transformers import PretrainedConfig

# Share of the cards' memory left free for what is not weights nor cache: prefill activations, logits,
# the sampler's sorted rows, the allocator's slack (a 4,096-token Llama-2-13B prefill needs about 1 GB).
RESERVE = 0.10
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class MemoryPlan:
    """How a model fits on its cards: bytes of weights, of cache per token, free, and the token budget."""

    weights: int
    per_token: int
    free: int
    total: int
    budget: int

    def describe(self) -> str:
        """One line: the budget and how it was derived."""
        gb = 1e9
        return (
            f"token budget {self.budget:,} = (free {self.free / gb:.1f} GB - weights "
            f"{self.weights / gb:.1f} GB - reserve {RESERVE * self.total / gb:.1f} GB) / "
            f"{self.per_token / 2**20:.2f} MiB of keys and values per token"
        )


def text_config(config: PretrainedConfig) -> PretrainedConfig:
    """The language model's part of a config (multimodal configs nest it)."""
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def kv_bytes_per_token(config: PretrainedConfig, dtype: str) -> int:
    """Bytes of keys and values one token takes in the cache, over all layers."""
    text = text_config(config)
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return 2 * text.num_hidden_layers * kv_heads * head_dim * BYTES[dtype]


def weight_bytes(config: PretrainedConfig, dtype: str) -> int:
    """Bytes of the model's weights in `dtype`, counted on a model built on the meta device (no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters()) * BYTES[dtype]


def cuda_memory(device: str) -> tuple[int, int]:
    """(free, total) bytes of the card (`cuda:N`) or of every visible card (`cuda`)."""
    import torch

    cards = range(torch.cuda.device_count()) if device == "cuda" else [torch.device(device).index or 0]
    free_total = [torch.cuda.mem_get_info(card) for card in cards]
    return sum(f for f, _ in free_total), sum(t for _, t in free_total)


def plan_memory(config: PretrainedConfig, dtype: str, free: int, total: int) -> MemoryPlan:
    """The token budget that fits `free` bytes beside the weights, keeping RESERVE of `total` spare."""
    weights, per_token = weight_bytes(config, dtype), kv_bytes_per_token(config, dtype)
    return MemoryPlan(weights, per_token, free, total, int((free - weights - RESERVE * total) // per_token))


def cuda_token_budget(name: str, device: str | None, dtype: str) -> MemoryPlan | None:
    """The default token budget of a model on CUDA (`dtype` as `load_model` takes it), from the cards'
    free memory before it loads (None off CUDA); a model that leaves no room for one full context of
    cache is one clear line."""
    import torch
    from transformers import AutoConfig

    device = device or "cuda"
    if not torch.cuda.is_available() or not device.startswith("cuda"):
        return None
    dtype = resolve_dtype(dtype, device)
    if dtype not in BYTES:
        return None
    plan = plan_memory(AutoConfig.from_pretrained(local_dir(name)), dtype, *cuda_memory(device))
    least = context_length(name)
    if plan.budget < least:
        raise UserError(
            f"model '{name}' in {dtype} leaves no room for its key/value cache on {device} "
            f"({plan.describe()}; at least {least:,} needed): use more GPUs (vLLM's --tensor-parallel-size) "
            "or another --dtype"
        )
    return plan
