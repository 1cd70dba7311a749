"""Weight-only int8 and int4 for CPU decoding: every linear layer and the LM head keep quantised
weights, and a decode step (a few rows) multiplies through torch's packed CPU kernels
(`aten._weight_int8pack_mm`: int8 with a scale per output row, or for at most four rows the built step
kernels' product, which reads the weights faster; `aten._weight_int4pack_mm_for_cpu`: int4 with a
scale and a zero per group of 32 inputs); activations stay in the model's dtype. A
prefill (many rows) multiplies the weights dequantised on the fly, where the packed kernels are half
as fast as a bf16 matmul. Fewer bytes per decode step, which is what batch-1 decoding on a CPU
waits for (measured here: the LM head's product in 29 ms bf16, 19 ms int8, 5 ms int4)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .native import StepKernels

QUANTISED = ("int8", "int4")
GROUP = 32  # int4: inputs sharing a scale and a zero


class QuantLinear(torch.nn.Module):
    """A linear layer with quantised weights: packed kernels for a few rows, dequantised for more."""

    kind = ""
    # products of at most this many rows go through the packed kernel, more multiply dequantised weights
    packed_rows = 0
    kernels: StepKernels | None = None  # the built step kernels, where a kind uses them

    def __init__(
        self, out_features: int, in_features: int, bias: torch.Tensor | None, dtype: torch.dtype
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.dtype = in_features, out_features, dtype
        self.register_buffer("bias", None if bias is None else bias.detach().to(dtype))

    def packed_product(self, x: torch.Tensor) -> torch.Tensor | None:
        """x [rows, in] @ W.T through the packed kernel (None if this layer keeps no packed weights)."""
        raise NotImplementedError

    def dequantised(self) -> torch.Tensor:
        """The weights [out, in] in the activations' dtype, as the kernel sees them."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., in] -> [..., out]."""
        flat = x.reshape(-1, self.in_features).to(self.dtype)
        return self.product(flat).view(*x.shape[:-1], self.out_features)

    def product(self, flat: torch.Tensor) -> torch.Tensor:
        """flat [rows, in] (in the activations' dtype) -> [rows, out]: packed for a few rows."""
        out = self.packed_product(flat) if flat.shape[0] <= self.packed_rows else None
        if out is None:
            out = F.linear(flat, self.dequantised())
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.kind} weights"

    def read_bytes(self) -> int:
        """Bytes a product through the packed kernel reads (the dequantised path reads more)."""
        raise NotImplementedError


class Int8Linear(QuantLinear):
    """int8 weights [out, in], one scale per output row (symmetric)."""

    kind = "int8"
    # measured on gemma-3-270m (2 cores): the packed kernel is faster than dequantising up to 24-32 rows
    # for a layer and 64 for the LM head
    packed_rows = 32

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> None:
        super().__init__(weight.shape[0], weight.shape[1], bias, dtype)
        w = weight.detach().float()
        # the kernel takes scales in the activations' dtype: choose each one there (rounded up, so no
        # weight clips) and round the weights against exactly that scale
        scale = (w.abs().amax(dim=1).clamp(min=1e-12) / 127 * (1 + 2**-7)).to(dtype)
        self.register_buffer(
            "weight", torch.round(w / scale.float()[:, None]).clamp_(-127, 127).to(torch.int8)
        )
        self.register_buffer("scales", scale)

    def packed_product(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernels is not None and self.kernels.takes_weights(x, self.weight):
            return self.kernels.product(x, self.weight, self.scales)
        return torch.ops.aten._weight_int8pack_mm(x, self.weight, self.scales)

    def dequantised(self) -> torch.Tensor:
        return self.weight.to(self.dtype) * self.scales[:, None]

    def read_bytes(self) -> int:
        return self.weight.numel() + self.scales.numel() * self.scales.element_size()

    @classmethod
    def concat(cls, parts: Sequence[Int8Linear]) -> Int8Linear:
        """One layer computing `parts` at once (their outputs concatenated); the parts keep views."""
        fused = cls.__new__(cls)
        QuantLinear.__init__(
            fused, sum(p.out_features for p in parts), parts[0].in_features, _bias(parts), parts[0].dtype
        )
        fused.register_buffer("weight", torch.cat([p.weight for p in parts]))
        fused.register_buffer("scales", torch.cat([p.scales for p in parts]))
        fused.kernels = parts[0].kernels
        start = 0
        for p in parts:
            p.weight, p.scales = (
                fused.weight[start : start + p.out_features],
                fused.scales[start : start + p.out_features],
            )
            start += p.out_features
        return fused


class Int4Linear(QuantLinear):
    """int4 weights, a scale and a zero per group of 32 inputs: w = (code - 8) * scale + zero."""

    kind = "int4"
    # measured on gemma-3-270m (2 cores): the packed kernel is faster than dequantising up to 64-128 rows
    # for a layer and beyond 128 for the LM head (at 32 rows: 65 against 830 ms)
    packed_rows = 64

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> None:
        super().__init__(weight.shape[0], weight.shape[1], bias, dtype)
        w = weight.detach().float().view(self.out_features, -1, GROUP)
        low, step = _grid(w)
        scale = step.to(dtype)  # the kernel takes its scales and zeros in the activations' dtype
        zero = (low + 8 * scale.float()).to(dtype)
        codes = torch.round((w - zero.float()[..., None]) / scale.float()[..., None] + 8).clamp_(0, 15)
        codes = codes.view(self.out_features, -1).to(torch.uint8)
        self.register_buffer("nibbles", _nibbles(codes))  # for dequantising: two codes a byte
        self.register_buffer("scales_zeros", torch.stack([scale, zero], -1).transpose(0, 1).contiguous())
        self.register_buffer("packed", _pack4(codes))

    def packed_product(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.packed is None:
            return None
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.packed, GROUP, self.scales_zeros)

    @property
    def codes(self) -> torch.Tensor:
        """The codes [out, in], 0-15."""
        return torch.stack([self.nibbles & 15, self.nibbles >> 4], dim=-1).view(self.out_features, -1)

    def dequantised(self) -> torch.Tensor:
        scale, zero = (t.t().repeat_interleave(GROUP, dim=1) for t in self.scales_zeros.unbind(-1))
        return (self.codes.to(self.dtype) - 8) * scale + zero

    def read_bytes(self) -> int:
        return self.nibbles.numel() + self.scales_zeros.numel() * self.scales_zeros.element_size()

    @classmethod
    def concat(cls, parts: Sequence[Int4Linear]) -> Int4Linear:
        """One layer computing `parts` at once; the parts keep views of its codes and scales and drop
        their packed copies (they multiply dequantised weights, used by prefills only)."""
        fused = cls.__new__(cls)
        QuantLinear.__init__(
            fused, sum(p.out_features for p in parts), parts[0].in_features, _bias(parts), parts[0].dtype
        )
        fused.register_buffer("nibbles", torch.cat([p.nibbles for p in parts]))
        fused.register_buffer("scales_zeros", torch.cat([p.scales_zeros for p in parts], dim=1))
        fused.register_buffer("packed", _pack4(fused.codes))
        start = 0
        for p in parts:
            rows = slice(start, start + p.out_features)
            p.nibbles, p.scales_zeros, p.packed = fused.nibbles[rows], fused.scales_zeros[:, rows], None
            start += p.out_features
        return fused


def _grid(w: torch.Tensor, rows: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Each group's 4-bit grid, (lowest value, step) [out, groups], for w [out, groups, GROUP]: the
    spread cut into the number of steps (15 down to 8) that leaves by far the smallest squared rounding
    error. Weights that already lie on a 16-level grid (4-bit source weights, e.g. GGUF's Q4_K, whose
    extreme codes a group need not use) keep their own grid and come back as they were, up to the
    scales' rounding; any other group gets the finest grid, its lowest and highest value at codes 0
    and 15. Worked `rows` output rows at a time (an LM head's temporaries stay small)."""
    low = w.amin(-1)
    spread = (w.amax(-1) - low).clamp(min=1e-8)
    steps = torch.full_like(spread, 15.0)
    for first in range(0, w.shape[0], rows):
        part = slice(first, first + rows)
        scaled = (w[part] - low[part, :, None]) / spread[part, :, None]  # 0..1
        best = None
        for n in range(15, 7, -1):
            t = scaled * n
            error = (t - t.round()).square_().sum(-1) / n**2  # in units of the spread squared
            if best is None:
                best = error
                continue
            better = error < best * 0.1  # a coarser grid must fit far better than the finer one
            best = torch.where(better, error, best)
            steps[part] = torch.where(better, float(n), steps[part])
    return low, spread / steps


def _nibbles(codes: torch.Tensor) -> torch.Tensor:
    """Codes [out, in] (0-15, uint8) two to a byte [out, in / 2]: the even input in the low half."""
    return codes[:, 0::2] | (codes[:, 1::2] << 4)


def _pack4(codes: torch.Tensor) -> torch.Tensor:
    """int4 codes [out, in] (0-15) in the CPU kernel's packed layout."""
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32), 2)


def _bias(parts: Sequence[QuantLinear]) -> torch.Tensor | None:
    """The concatenated biases of fused layers (zeros for those without), or None if none has one."""
    if all(p.bias is None for p in parts):
        return None
    return torch.cat(
        [p.bias if p.bias is not None else torch.zeros(p.out_features, dtype=p.dtype) for p in parts]
    )


KINDS = {"int8": Int8Linear, "int4": Int4Linear}


def fits_int4(layer: torch.nn.Linear) -> bool:
    """Whether the int4 kernel takes the layer: whole groups of inputs, outputs a multiple of 16."""
    return layer.in_features % GROUP == 0 and layer.out_features % 16 == 0


def quantise(model: torch.nn.Module, kind: str) -> torch.nn.Module:
    """Replace every `nn.Linear` (LM head included; a tied input embedding keeps its own weights for
    lookups) by a quantised layer of `kind`, in place; int4 leaves a layer the kernel cannot take as it
    is. The model must be on the CPU."""
    if next(model.parameters()).device.type != "cpu":
        raise ValueError(f"{kind} weights run on the CPU only")
    layer, dtype = KINDS[kind], model.dtype
    for module in list(model.modules()):
        for child, sub in list(module.named_children()):
            if isinstance(sub, torch.nn.Linear) and (kind != "int4" or fits_int4(sub)):
                setattr(module, child, layer(sub.weight, sub.bias, dtype))
    return model


def use_kernels(model: torch.nn.Module, kernels: StepKernels | None) -> None:
    """Let the model's quantised layers multiply a few rows in the built step kernels (None: torch's)."""
    for module in model.modules():
        if isinstance(module, QuantLinear):
            module.kernels = kernels


def quantised_kind(model: torch.nn.Module) -> str | None:
    """`int8` or `int4` if the model's linear layers run quantised weights, else None."""
    return next((m.kind for m in model.modules() if isinstance(m, QuantLinear)), None)
