"""Loading a tokenizer or a causal LM by name: the device, the dtype the hardware runs fast, the context."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError, first_line
from .builds import local_dir, quiet_transformers
from .registry import model_spec
from .weights import weights_problem

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DTYPES = (
    "auto",
    "bfloat16",
    "float16",
    "float32",
    "int8",
    "int4",
)  # int8/int4: weight-only, CPU, transformers


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """The model's tokenizer, set for batched decoding (left padding, a pad token)."""
    from transformers import AutoTokenizer

    quiet_transformers()
    where = local_dir(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"tokenizer of '{name}' could not be loaded from {where}: {first_line(exc)}"
        ) from None
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def context_length(name: str, model: PreTrainedModel | None = None) -> int:
    """The model's context window in tokens (registry value, else the loaded config)."""
    spec = model_spec(name)
    if spec.context_length:
        return spec.context_length
    if model is not None:
        return int(getattr(model.config, "max_position_embeddings", 2048))
    from transformers import AutoConfig

    return int(getattr(AutoConfig.from_pretrained(local_dir(name)), "max_position_embeddings", 2048))


def pick_device(device: str | None = None) -> str:
    """The device to run on: the one asked for, else CUDA when present, else CPU."""
    import torch

    if device:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"device '{device}' asked for, but CUDA is not available here")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX-BF16), where bf16 pays."""
    import torch

    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)  # private helpers (torch >= 2.3): try, never rely on them
        try:
            if check is not None and check():
                return True
        except (RuntimeError, AttributeError):
            pass
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_dtype(dtype: str) -> str:
    """`dtype` if it is one this package knows, else one clear line."""
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype '{dtype}'; dtypes: {', '.join(DTYPES)}")
    return dtype


def cuda_has_bf16(device: str = "cuda") -> bool:
    """Whether a CUDA device computes in bf16 (compute capability 8.0 or more, the reference's test);
    `cuda` alone asks it of every visible card (a model spread over them needs it on all)."""
    import torch

    cards = range(torch.cuda.device_count()) if device == "cuda" else [torch.device(device).index or 0]
    return all(torch.cuda.get_device_capability(card)[0] >= 8 for card in cards)


def resolve_dtype(dtype: str, device: str) -> str:
    """The dtype a model runs in: `auto` is bf16 where the device computes in it (CUDA cards of compute
    capability 8.0 or more, CPUs with bf16 instructions), else fp16 on CUDA (as the reference) and fp32
    on a CPU."""
    if check_dtype(dtype) != "auto":
        return dtype
    if device.startswith("cuda"):
        return "bfloat16" if cuda_has_bf16(device) else "float16"
    return "bfloat16" if cpu_has_fast_bf16() else "float32"


def accelerator_dtype(dtype: str) -> str:
    """The dtype for an engine that runs on the visible CUDA cards (vLLM): `auto` resolved by the cards,
    bf16 (the paper's GPU setting) where none is visible."""
    import torch

    if check_dtype(dtype) != "auto":
        return dtype
    return resolve_dtype(dtype, "cuda") if torch.cuda.is_available() else "bfloat16"


def load_model(
    name: str, device: str | None = None, dtype: str = "auto", attention: str = "sdpa"
) -> PreTrainedModel:
    """A causal LM ready for generation in the dtype `resolve_dtype` settles (CUDA with
    `device_map="auto"`); `dtype` forces one."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    where = local_dir(name)
    device = pick_device(device)
    compute = resolve_dtype("auto" if dtype in ("int8", "int4") else dtype, device)  # quantised later
    kwargs: dict = {"dtype": getattr(torch, compute), "attn_implementation": attention}
    if device.startswith("cuda"):
        kwargs["device_map"] = "auto" if device == "cuda" else device
    problem = weights_problem(Path(where)) if Path(where).is_dir() else None
    if problem is not None:
        raise UserError(f"model '{name}' could not be loaded: {problem}")
    try:
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    except (OSError, ValueError, RuntimeError, EOFError) as exc:
        raise UserError(f"model '{name}' could not be loaded from {where}: {first_line(exc)}") from None
    if not device.startswith("cuda"):
        model.to(device)
    return model.eval()
