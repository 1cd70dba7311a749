"""What a generation run should take in memory, and what it took: the prediction from the token
budget, and the process's own peak (Linux: resident set high-water mark; CUDA: the allocator's)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .kvcache import BLOCK, LayerInfo, capacities, layer_dims

PREFILL_BLOCK_ROWS = 256  # query rows per block of the blocked prefill (the larger of attention._block_rows)


def rss_bytes(field: str = "VmRSS") -> int | None:
    """This process's resident set (`VmRSS`) or its high-water mark (`VmHWM`), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak(device: torch.device | str = "cpu") -> bool:
    """Start measuring the peak afresh (the resident high-water mark, or CUDA's); False if it cannot."""
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_bytes(device: torch.device | str = "cpu") -> int | None:
    """The peak since `reset_peak`: CUDA's allocated bytes, or the process's resident high-water mark."""
    if torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return rss_bytes("VmHWM")


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters and buffers (each tensor once, tied ones too)."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def prefill_activation_bytes(config: object, length: int, dtype: torch.dtype) -> int:
    """The largest prefill's working set, estimated: a layer's hidden states, queries/keys/values and
    MLP intermediates for `length` tokens, plus a block of attention scores and the last logits."""
    size = torch.empty((), dtype=dtype).element_size()
    heads, kv_heads, head_dim = layer_dims(config)
    per_token = 4 * config.hidden_size + (heads + 2 * kv_heads) * head_dim + 3 * config.intermediate_size
    scores = 2 * heads * min(PREFILL_BLOCK_ROWS, length) * length * 4  # float32 scores and probabilities
    return length * per_token * size + scores + config.vocab_size * 4


@dataclass(frozen=True)
class MemoryPlan:
    """The memory a run is predicted to take: the formula's terms, in bytes."""

    weights: int
    kv_at_budget: int  # key/value storage if the budget is full (the pool's size for this call)
    activations: int


def memory_plan(
    model: torch.nn.Module,
    layers: list[LayerInfo],
    budget: int,
    max_rows: int,
    max_new_tokens: int,
    prompt_lengths: list[int],
    rows_total: int,
) -> MemoryPlan:
    """The prediction for one call: key/value blocks as the pool is sized (2 x layers x kv heads x head
    dim x dtype bytes x tokens held, sliding layers at most their window), weights, activations."""
    config = model.config.get_text_config()
    _, kv_heads, head_dim = layer_dims(config)
    dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
    size = torch.empty((), dtype=dtype).element_size()
    blocks = capacities(layers, budget, max_rows, max_new_tokens, prompt_lengths, rows_total)
    per_token = 2 * kv_heads * head_dim * size
    kv = sum(per_token * BLOCK * blocks[x.window] for x in layers)
    return MemoryPlan(
        weight_bytes(model), kv, prefill_activation_bytes(config, max(prompt_lengths, default=1), dtype)
    )
