"""Attention for batched decoding on CPU, and the check of what a model asks of it.

`attention` is registered with transformers under the name `icalign`. Called without a `kv_state`
it is a drop-in for SDPA (what `model.generate` sees): an unpadded causal prefill runs as blocked
matmuls (2-7x faster than CPU SDPA here, sliding windows included) and a one-token step as grouped
matmuls. Called with a `KeyValues` store (the decode loop's `kvcache.KVState`) the state stores the keys
and values and attends: a prompt's prefill, or one decode step of every running row.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Protocol

import torch

from ..errors import UserError


@dataclass(frozen=True)
class LayerInfo:
    """What the cache needs to know of one attention layer."""

    window: int | None  # sliding window (keys seen: position > query position - window), or None
    device: torch.device


class KeyValues(Protocol):
    """What a decode loop's key/value store offers this attention (`kvcache.KVState`)."""

    windows: list[int | None]  # each layer's sliding window

    def attend(
        self, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """Store a layer's new keys and values, and attend over what the rows hold."""


NAME = "icalign"
LAYER_TYPES = ("full_attention", "sliding_attention")  # the kinds of layer the decode loop implements


def register() -> str:
    """Register the attention (and its mask, SDPA's) with transformers; returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    sliding_window: int | None = None,
    softcap: float | None = None,
    kv_state: KeyValues | None = None,
    probe: _Probe | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: query [B, H, q, D], key/value [B, Hkv, k, D] -> [B, q, H, D]."""
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    if probe is not None:  # `probe_layers`: record what this layer asks for, compute nothing
        extra = sorted(k for k, v in kwargs.items() if v is not None and k not in _HARMLESS)
        probe.layers[module.layer_idx] = (
            sliding_window,
            softcap,
            extra,
            query.device,
            getattr(module, "is_causal", True),
        )
        return query.transpose(1, 2), None
    if kv_state is not None:
        if softcap or sliding_window != kv_state.windows[module.layer_idx]:
            raise RuntimeError(
                f"layer {module.layer_idx} asks for attention the decode loop was not set up for"
            )
        return kv_state.attend(module.layer_idx, query, key, value, scale), None
    q_len, on_cpu = query.shape[2], query.device.type == "cpu"
    if on_cpu and not softcap and q_len > 1 and attention_mask is None and key.shape[2] == q_len:
        return causal_attention(query, key, value, scale), None
    if on_cpu and q_len == 1:
        return one_step_attention(query, key, value, attention_mask, scale, softcap), None
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    extra = {"softcap": softcap} if softcap else {}
    return sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **extra, **kwargs
    )


def _block_rows(head_dim: int) -> int:
    """Query rows per block of the blocked prefill (measured best on this CPU: 128 for D=64, 256 for 256)."""
    return 128 if head_dim <= 128 else 256


def causal_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float, window: int | None = None
) -> torch.Tensor:
    """Causal self-attention of an unpadded sequence, block of queries by block: [B, T, H, D] out.
    With `window`, a query sees only the last `window` positions (itself included).

    The queries of one key/value head are laid out position-major ([B, Hkv, T, group, D]), so that a
    block of positions is one contiguous [n * group, D] matrix: no copy per block.
    """
    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    q = torch.empty((batch, kv_heads, length, group, dim), dtype=query.dtype, device=query.device)
    torch.mul(query.view(batch, kv_heads, group, length, dim).transpose(2, 3), scale, out=q)
    key, value = key.contiguous(), value.contiguous()
    out = torch.empty_like(q)
    step = _block_rows(dim)
    for start in range(0, length, step):
        end = min(start + step, length)
        low = 0 if window is None else max(0, start - window + 1)
        n = end - start
        # one 2-D product per key/value head: a [low:end] slice of one head is contiguous, of all
        # heads it is not (a batched bf16 product over it copies it; 25% slower here)
        flat = torch.empty((batch, kv_heads, n * group, end - low), dtype=q.dtype, device=q.device)
        for b, h in itertools.product(range(batch), range(kv_heads)):
            torch.matmul(q[b, h, start:end].view(n * group, dim), key[b, h, low:end].t(), out=flat[b, h])
        scores = flat.view(batch, kv_heads, n, group, end - low)
        # only the last n columns (the block's own positions) and, with a window, the first n hold
        # masked entries: row i sees column j of the block iff j <= i (window: low + j > start + i - window)
        i = torch.arange(n, device=query.device)
        scores[..., end - low - n :].masked_fill_((i[None, :] > i[:, None])[:, None, :], float("-inf"))
        if window is not None:
            first = min(n, end - low)
            gone = low + i[None, :first] <= start + i[:, None] - window
            scores[..., :first].masked_fill_(gone[:, None, :], float("-inf"))
        probs = torch.softmax(flat, dim=-1)
        for b, h in itertools.product(range(batch), range(kv_heads)):
            torch.matmul(probs[b, h], value[b, h, low:end], out=out[b, h, start:end].view(n * group, dim))
    return out.transpose(1, 2).reshape(batch, length, heads, dim)


def one_step_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    softcap: float | None = None,
) -> torch.Tensor:
    """One new token per row against its cache, as grouped matmuls (CPU SDPA is slow at q_len 1)."""
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    q = query.reshape(batch, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(q, key.transpose(-1, -2)).float() * scale
    if softcap:
        scores = torch.tanh(scores / softcap) * softcap
    if mask is not None:
        mask = mask[:, :, -1:, :]  # [B, 1, 1, k]
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    return torch.matmul(probs, value).reshape(batch, 1, heads, dim)


class _Probe:
    """What each layer asked of the attention (not a dict: device hooks copy dicts they pass on)."""

    def __init__(self) -> None:
        self.layers: dict[int, tuple] = {}


_HARMLESS = {"position_ids", "output_attentions", "use_cache", "cache_position", "is_causal"}


def probe_layers(model: torch.nn.Module) -> list[LayerInfo]:
    """Each attention layer's window and device, read by running the model on two tokens; a model
    whose attention the decode loop does not implement is refused here, in one line, before any run."""
    config = model.config.get_text_config()
    name = getattr(config, "model_type", type(model).__name__)
    unknown = sorted(set(getattr(config, "layer_types", None) or LAYER_TYPES) - set(LAYER_TYPES))
    if unknown:
        raise UserError(
            f"model type '{name}' has {', '.join(unknown)} layers; this backend implements full "
            "and sliding-window attention only (use --backend vllm)"
        )
    if getattr(config, "use_bidirectional_attention", False):
        raise UserError(
            f"model type '{name}' attends both ways; this backend generates with causal models only"
        )
    probe = _Probe()
    device = next(model.parameters()).device
    with torch.inference_mode():
        model(input_ids=torch.ones((1, 2), dtype=torch.long, device=device), probe=probe, use_cache=False)
    seen = probe.layers
    if sorted(seen) != list(range(len(seen))) or not seen:
        raise UserError(f"model type '{name}': its attention layers could not be read (no layer_idx)")
    layers = []
    for i in range(len(seen)):
        window, softcap, extra, where, causal = seen[i]
        refused = [
            "attention logit soft-capping" if softcap else "",
            ", ".join(extra),
            "" if causal else "non-causal",
        ]
        refused = [r for r in refused if r]
        if refused:
            raise UserError(
                f"model type '{name}' asks attention for {'; '.join(refused)} (layer {i}), "
                "which this backend does not implement (use --backend vllm)"
            )
        layers.append(LayerInfo(window, where))
    return layers
