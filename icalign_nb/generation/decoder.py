"""A decode step of Llama and Gemma 3 models without transformers' per-module overhead.

At batch 1 a decode step of a small model is mostly fixed cost: some 350 module calls and 2,500
tensor operations around 127 matrix-vector products. `LeanDecoder` runs the same operations as
transformers' forward for one token per row, straight from the model's own weights, in the same
order and dtypes (norms in float32 as each model's norm does), with two changes that only regroup
products: a layer's query, key and value projections are one product, and so are the MLP's gate
and up projections (their weights are concatenated once, and the model's own modules keep views of
the concatenated weights, so nothing is stored twice). With the built kernels (`native.py`) runs of
small operations are one call each, rounded as the operations they replace round: Gemma 3's attention
from a layer's projection (query and key norms, rotation, storing the new keys and values, attention),
the end of each sublayer (its sandwich norm, the residual sum, the next norm), and the MLP's activated
gate times its up projection. Prefill, and models of other families, go through transformers' forward.
The parity tests hold it to transformers' eager attention.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .quantize import QuantLinear

if TYPE_CHECKING:
    from .native import StepKernels

FAMILIES = {"LlamaForCausalLM": "llama", "Gemma3ForCausalLM": "gemma3"}
NARROW_ROWS = 16
# a step of at most NARROW_ROWS rows runs on one thread, but for products that read more weight bytes
# than this: with waiting threads asleep (OMP_WAIT_POLICY=PASSIVE), waking one costs more than it
# saves on a layer's product (measured here: 1.9 MB bf16 89 us on one thread, 103 on two), while the
# LM head's takes half the time on two
PARALLEL_BYTES = 4 * 2**20
# a small step of at least this many rows attends in torch on every thread: its tasks (a prompt's rows x kv
# heads) pay for waking one (SmolLM2, one prompt x 12 samples: attention 53 to 35 ms a step; gemma-3-270m
# at 4 rows 75-77 to 78-83 tok/s); one row's task rarely does. The built kernel attends on every thread
# at any size: it wakes one only for 1 MB of keys and values or more (a long prompt's span of keys)
WIDE_ATTENTION_ROWS = 2


def _fuse(modules: list[torch.nn.Module]) -> torch.nn.Module:
    """One product for several linear layers of the same input: their weights (and scales, biases)
    concatenated by output rows; each module keeps a view of its rows."""
    kinds = {type(m) for m in modules}
    if len(kinds) == 1 and issubclass(next(iter(kinds)), QuantLinear):
        return next(iter(kinds)).concat(modules)
    if kinds != {torch.nn.Linear}:
        raise TypeError("only layers of one kind (nn.Linear, or one quantised kind) can be fused")
    weight = torch.cat([m.weight.detach() for m in modules])
    biases = [m.bias for m in modules]
    bias = None
    if any(b is not None for b in biases):
        bias = torch.cat(
            [
                b.detach() if b is not None else torch.zeros_like(m.weight[:, 0])
                for b, m in zip(biases, modules, strict=True)
            ]
        )
    start = 0
    for m in modules:
        rows = m.weight.shape[0]
        m.weight = torch.nn.Parameter(weight[start : start + rows], requires_grad=False)
        start += rows
    fused = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    fused.weight = torch.nn.Parameter(weight, requires_grad=False)
    fused.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)
    return fused


def _gemma_scale(module: torch.nn.Module) -> torch.Tensor:
    """A Gemma 3 RMSNorm's scale, 1 + its weight, in float32 (as the module multiplies)."""
    return 1.0 + module.weight.detach().float()


def _norm(
    module: torch.nn.Module, family: str, kernels: StepKernels | None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """An RMSNorm module's computation, its constants taken once (Gemma 3's in one built kernel, if given
    and it takes the weights)."""
    if family == "gemma3":  # (x * rsqrt(mean(x^2) + eps) * (1 + w)) in float32, then the input's dtype
        scale, eps = _gemma_scale(module), module.eps
        size = scale.shape
        if kernels is not None and kernels.takes(module.weight):
            return lambda x: kernels.rms_norm(x, scale, eps)

        def gemma(x: torch.Tensor) -> torch.Tensor:
            return F.rms_norm(x.float(), size, scale, eps).type_as(x)

        return gemma
    weight, eps = module.weight.detach(), module.variance_epsilon
    size = weight.shape

    def llama(x: torch.Tensor) -> torch.Tensor:  # w * (x * rsqrt(mean(x^2) + eps)) in the input's dtype
        return weight * F.rms_norm(x.to(torch.float32), size, None, eps).to(x.dtype)

    return llama


def _sublayer_end(
    post: torch.nn.Module | None,
    then: torch.nn.Module | None,
    family: str,
    kernels: StepKernels | None,
    eager: bool,
) -> Callable:
    """The end of a sublayer: (hidden, out) -> (hidden + out, normed by Gemma 3's sandwich norm `post` if
    any; then that hidden normed by `then`, the norm before what follows, if `eager`, else None). Gemma 3's
    three steps are one built kernel where it takes them (then `then` is always applied)."""
    if (
        family == "gemma3"
        and kernels is not None
        and post is not None
        and then is not None
        and kernels.takes(post.weight)
        and post.weight.device == then.weight.device
        and post.eps == then.eps
    ):
        scales, eps = (_gemma_scale(post), _gemma_scale(then)), post.eps
        return lambda hidden, out: kernels.add_norms(hidden, out, scales, eps)
    post_norm = None if post is None else _norm(post, family, kernels)
    then_norm = None if then is None or not eager else _norm(then, family, kernels)

    def end(hidden: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden = hidden + (out if post_norm is None else post_norm(out))
        return hidden, None if then_norm is None else then_norm(hidden)

    return end


def _gate(act: torch.nn.Module, kernels: StepKernels | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """An MLP's act(gate) * up from its fused gate and up projections [rows, 2 * inner]: one built kernel
    call for GELU's tanh form (Gemma 3) and SiLU (Llama), where it takes the rows."""
    kind = None
    gelu = getattr(act, "act", None)  # transformers' GELU module holds F.gelu, or its own formula
    if isinstance(gelu, partial) and gelu.func is F.gelu and gelu.keywords == {"approximate": "tanh"}:
        kind = 0
    elif isinstance(act, torch.nn.SiLU) or type(act).__name__ == "SiLUActivation":  # transformers' SiLU
        kind = 1

    def gated(gate_up: torch.Tensor) -> torch.Tensor:
        gate, up = gate_up.chunk(2, dim=-1)
        return act(gate) * up

    if kind is None or kernels is None:
        return gated
    return lambda gate_up: kernels.gated(gate_up, kind) if kernels.takes(gate_up) else gated(gate_up)


def _head_scales(
    q_norm: torch.nn.Module, k_norm: torch.nn.Module, heads: int, kv_heads: int
) -> tuple[torch.Tensor, float]:
    """Gemma 3's query and key norms as one: each head's scale [heads + kv_heads, dim] (float32) and the
    epsilon."""
    q_scale, k_scale = _gemma_scale(q_norm), _gemma_scale(k_norm)
    if k_norm.eps != q_norm.eps:
        raise ValueError("the query and key norms differ in epsilon")
    return torch.cat([q_scale.expand(heads, -1), k_scale.expand(kv_heads, -1)]), q_norm.eps


def _head_norm(q_norm: torch.nn.Module, k_norm: torch.nn.Module, heads: int, kv_heads: int) -> Callable:
    """Gemma 3's query and key norms as one, then the rotary embedding, in torch: (x [rows, heads +
    kv_heads, dim], cos, sin) -> x normed, each head by its own module's constants, and rotated (the same
    computation per element as the two modules and the rotation; with the built kernels, the layer's
    attention takes all of it, see `_projected_attention`)."""
    scale, eps = _head_scales(q_norm, k_norm, heads, kv_heads)
    size = scale.shape[-1:]

    def both(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        return _rotate((F.rms_norm(x.float(), size, None, eps) * scale).type_as(x), cos, sin)

    return both


def _projected_attention(
    attn: torch.nn.Module, heads: int, kv_heads: int, index: int, kernels: StepKernels | None
) -> Callable | None:
    """Gemma 3's attention of one decode step from the layer's fused projection, (qkv [rows, (heads + 2 *
    kv_heads) * dim], cos, sin, state) -> [rows, heads * dim]: the query and key norms, the rotation, the
    store of the new keys and values and the attention in one built kernel call (None where the kernels
    do not take the layer: the pieces one by one)."""
    if kernels is None or not hasattr(attn, "q_norm") or not kernels.takes(attn.q_norm.weight):
        return None
    norm, scale = _head_scales(attn.q_norm, attn.k_norm, heads, kv_heads), attn.scaling

    def attend(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, state: object) -> torch.Tensor:
        return state.step.attend_projected(index, qkv, heads, norm, (cos, sin), scale)

    return attend


def _product(module: torch.nn.Module, kernels: StepKernels | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A linear layer's product on [rows, in] without the module call: a few rows in the built kernels
    where they take the weights; the module itself where hooks place its weights or inputs."""
    if hasattr(module, "_hf_hook"):
        return module
    if isinstance(module, QuantLinear):
        return module.product
    if not isinstance(module, torch.nn.Linear):
        return module
    weight, bias = module.weight, module.bias
    if kernels is None or not kernels.takes(weight):
        return lambda x: F.linear(x, weight, bias)

    def product(x: torch.Tensor) -> torch.Tensor:
        if not kernels.takes_weights(x, weight):
            return F.linear(x, weight, bias)
        out = kernels.product(x, weight)
        return out if bias is None else out + bias

    return product


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes of weights a product of `module` reads."""
    if isinstance(module, QuantLinear):
        return module.read_bytes()
    return sum(p.numel() * p.element_size() for p in module.parameters())


class _Threads:
    """A small step's thread count: one thread, all of them (`wide`) for the products and attention that
    gain."""

    def __init__(self, rows: int) -> None:
        self.all = torch.get_num_threads()
        self.narrow = rows <= NARROW_ROWS and self.all > 1

    def __enter__(self) -> _Threads:
        if self.narrow:
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.narrow:
            torch.set_num_threads(self.all)

    def wide(self, work: Callable[..., torch.Tensor], *args: torch.Tensor) -> torch.Tensor:
        """`work(*args)` on every thread."""
        if not self.narrow:
            return work(*args)
        torch.set_num_threads(self.all)
        try:
            return work(*args)
        finally:
            torch.set_num_threads(1)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of [rows, heads, dim] by cos/sin [rows, 1, dim], `sin` with its first half
    negated: x * cos + cat(-x2, x1) * sin, as cat(x2, x1) * (-sin1, sin2) (the same products)."""
    return x * cos + x.roll(x.shape[-1] // 2, -1) * sin


@dataclass
class _Layer:
    """One decoder layer's pieces (products as callables on [rows, in])."""

    index: int
    kind: str  # its rotary kind (Gemma 3: the layer type)
    device: torch.device
    norm_in: Callable
    qkv: torch.nn.Module
    qk_norm: Callable | None  # the query and key norms, then the rotation (Gemma 3 in torch)
    attend_projected: Callable | None  # a step's attention from the projection (Gemma 3, built kernels)
    o_proj: torch.nn.Module
    gate_up: torch.nn.Module
    gated: Callable  # [rows, 2 * inner] (gate and up side by side) -> act(gate) * up
    down: torch.nn.Module
    after_attention: Callable  # (hidden, out) -> (hidden, the MLP's input): residual sum and norms
    after_mlp: Callable  # (hidden, out) -> (hidden, the next layer's input, or None: it norms its own)
    heads: int
    kv_heads: int
    head_dim: int
    scale: float
    products: tuple[Callable, Callable, Callable, Callable] = ()  # qkv, o_proj, gate_up, down
    wide: tuple[bool, bool, bool, bool] = ()  # which of them run on every thread in a small step


class LeanDecoder:
    """Decode steps of a Llama or Gemma 3 model (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, family: str, kernels: StepKernels | None = None) -> None:
        self.model, self.family, self.kernels = model, family, kernels
        inner = model.model
        config = model.config.get_text_config()
        self.embed = inner.embed_tokens
        self.rotary = inner.rotary_emb
        self.final_norm = _norm(inner.norm, family, kernels)
        self.head = model.lm_head
        self.softcap = getattr(config, "final_logit_softcapping", None)
        types = getattr(config, "layer_types", None)
        self.kinds = sorted(set(types)) if family == "gemma3" else ["all"]
        self.layers = []
        for i, layer in enumerate(inner.layers):
            attn, mlp = layer.self_attn, layer.mlp
            sandwich = family == "gemma3"
            following = inner.layers[i + 1].input_layernorm if i + 1 < len(inner.layers) else inner.norm
            pre_mlp = layer.pre_feedforward_layernorm if sandwich else layer.post_attention_layernorm
            post_attention = layer.post_attention_layernorm if sandwich else None  # Gemma 3's sandwich norms
            post_mlp = layer.post_feedforward_layernorm if sandwich else None
            heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
            projected = _projected_attention(attn, heads, kv_heads, i, kernels)
            self.layers.append(
                _Layer(
                    index=i,
                    kind=types[i] if family == "gemma3" else "all",
                    device=layer.input_layernorm.weight.device,
                    norm_in=_norm(layer.input_layernorm, family, kernels),
                    qkv=_fuse([attn.q_proj, attn.k_proj, attn.v_proj]),
                    qk_norm=_head_norm(attn.q_norm, attn.k_norm, heads, kv_heads)
                    if hasattr(attn, "q_norm") and projected is None
                    else None,
                    attend_projected=projected,
                    o_proj=attn.o_proj,
                    gate_up=_fuse([mlp.gate_proj, mlp.up_proj]),
                    gated=_gate(mlp.act_fn, kernels),
                    down=mlp.down_proj,
                    after_attention=_sublayer_end(post_attention, pre_mlp, family, kernels, True),
                    after_mlp=_sublayer_end(post_mlp, following, family, kernels, False),
                    heads=heads,
                    kv_heads=kv_heads,
                    head_dim=attn.head_dim,
                    scale=attn.scaling,
                )
            )
            x = self.layers[-1]
            x.products = tuple(_product(m, kernels) for m in (x.qkv, x.o_proj, x.gate_up, x.down))
            x.wide = tuple(weight_bytes(m) > PARALLEL_BYTES for m in (x.qkv, x.o_proj, x.gate_up, x.down))
        self.head_product = _product(self.head, kernels)
        self.head_wide = weight_bytes(self.head) > PARALLEL_BYTES
        self.head_device = next(
            t for t in (*self.head.parameters(), *self.head.buffers()) if t is not None
        ).device

    @classmethod
    def build(cls, model: torch.nn.Module, kernels: StepKernels | None = None) -> LeanDecoder | None:
        """The lean decoder of a supported model (weights fused in place), or None."""
        family = FAMILIES.get(type(model).__name__)
        return cls(model, family, kernels) if family else None

    def products(self) -> list[tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]]:
        """The linear products one decode step runs, in order (the LM head last): each layer and the
        product the step calls on it."""
        pairs = [
            pair
            for x in self.layers
            for pair in zip((x.qkv, x.o_proj, x.gate_up, x.down), x.products, strict=True)
        ]
        return [*pairs, (self.head, self.head_product)]

    def __call__(self, tokens: torch.Tensor, positions: torch.Tensor, state: object) -> torch.Tensor:
        """Logits [rows, vocab] of one decode step: tokens [rows, 1], positions [rows, 1]."""
        with _Threads(tokens.shape[0]) as threads:
            return self._step(tokens, positions, state, threads)

    def _step(
        self, tokens: torch.Tensor, positions: torch.Tensor, state: object, threads: _Threads
    ) -> torch.Tensor:
        """The step itself (see `__call__`)."""
        hidden = self.embed(tokens)[:, 0]  # [rows, hidden]
        rows = hidden.shape[0]
        if self.family == "gemma3":
            rope = {k: self.rotary(hidden[:, None], positions, k) for k in self.kinds}
        else:
            rope = {"all": self.rotary(hidden[:, None], positions)}
        rope = {k: (c, _signed_sin(s)) for k, (c, s) in rope.items()}  # [rows, 1, dim] each

        wide_attention = self.kernels is not None or rows >= WIDE_ATTENTION_ROWS

        def product(f: Callable, wide: bool, x: torch.Tensor) -> torch.Tensor:
            return threads.wide(f, x) if wide else f(x)

        x = None  # a layer's input, normed (None: the layer norms its own)
        for layer in self.layers:
            if hidden.device != layer.device:
                hidden, x = hidden.to(layer.device), None if x is None else x.to(layer.device)
                rope = {k: (c.to(layer.device), s.to(layer.device)) for k, (c, s) in rope.items()}
            cos, sin = rope[layer.kind]
            qkv_product, o_product, gate_up_product, down_product = layer.products
            qkv_wide, o_wide, gate_up_wide, down_wide = layer.wide
            h, kv, d = layer.heads, layer.kv_heads, layer.head_dim
            x = layer.norm_in(hidden) if x is None else x
            qkv = product(qkv_product, qkv_wide, x)
            if layer.attend_projected is not None:  # one call from the projection (on every thread)
                out = threads.wide(layer.attend_projected, qkv, cos, sin, state)
            else:
                qkv = qkv.view(rows, h + 2 * kv, d)
                qk, v = qkv[:, : h + kv], qkv[:, h + kv :]
                # [rows, heads + kv_heads, 1, dim], normed (Gemma 3) and rotated
                qk = _rotate(qk, cos, sin) if layer.qk_norm is None else layer.qk_norm(qk, cos, sin)
                qk = qk[:, :, None]
                attend = partial(state.attend, layer.index, qk[:, :h], qk[:, h:], v[:, :, None], layer.scale)
                out = (threads.wide(attend) if wide_attention else attend()).reshape(rows, h * d)
            out = product(o_product, o_wide, out)  # out: [rows, heads * dim]
            hidden, x = layer.after_attention(hidden, out)
            out = product(down_product, down_wide, layer.gated(product(gate_up_product, gate_up_wide, x)))
            hidden, x = layer.after_mlp(hidden, out)
        hidden = self.final_norm(hidden) if x is None else x
        if hidden.device != self.head_device:
            hidden = hidden.to(self.head_device)
        logits = product(self.head_product, self.head_wide, hidden)
        if self.softcap:
            logits = logits.div_(self.softcap).tanh_().mul_(self.softcap)  # a fresh tensor: in place
        return logits


def _signed_sin(sin: torch.Tensor) -> torch.Tensor:
    """`sin` with its first half negated (see `_rotate`)."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
