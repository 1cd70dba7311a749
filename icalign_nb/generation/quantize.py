"""Weight-only int8 for CPU decoding: every linear layer and the LM head read int8 weights with one
scale per output row (symmetric), and multiply through torch's packed kernel
(`aten._weight_int8pack_mm`); activations stay in the model's dtype. Half the bytes of bf16 per
decode step, which is what batch-1 decoding on a CPU waits for."""

from __future__ import annotations

import torch

INT8 = "int8"


class Int8Linear(torch.nn.Module):
    """A linear layer with int8 weights [out, in] and a scale per output row, in the input's dtype."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> None:
        super().__init__()
        w = weight.detach().float()
        # the kernel takes scales in the activations' dtype: choose each one there (rounded up, so no
        # weight clips) and round the weights against exactly that scale
        scale = (w.abs().amax(dim=1).clamp(min=1e-12) / 127 * (1 + 2**-7)).to(dtype)
        self.register_buffer(
            "weight", torch.round(w / scale.float()[:, None]).clamp_(-127, 127).to(torch.int8)
        )
        self.register_buffer("scales", scale)
        self.register_buffer("bias", None if bias is None else bias.detach().to(dtype))
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., in] -> [..., out]."""
        flat = x.reshape(-1, self.in_features)
        if flat.dtype != self.scales.dtype:
            flat = flat.to(self.scales.dtype)
        out = torch.ops.aten._weight_int8pack_mm(flat, self.weight, self.scales)
        if self.bias is not None:
            out = out + self.bias
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Replace every `nn.Linear` (LM head included; a tied input embedding keeps its own weights for
    lookups) by an `Int8Linear`, in place; the model must be on the CPU."""
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8 weights run on the CPU only")
    dtype = model.dtype
    for module in list(model.modules()):
        for child, sub in list(module.named_children()):
            if isinstance(sub, torch.nn.Linear):
                setattr(module, child, Int8Linear(sub.weight, sub.bias, dtype))
    return model


def is_int8(model: torch.nn.Module) -> bool:
    """Whether the model's linear layers run int8 weights."""
    return any(isinstance(m, Int8Linear) for m in model.modules())
