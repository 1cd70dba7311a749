"""Model loading: the registry, dtype and device choices, BOS per model, and clear errors for bad names."""

from __future__ import annotations

import re

import pytest

from icalign_nb.errors import UserError
from icalign_nb.models import loading
from icalign_nb.models.loading import context_length, load_model, pick_device, resolve_dtype
from icalign_nb.models.registry import DEFAULT_MODEL, REGISTRY, model_spec
from icalign_nb.models.tokens import encode_prompts, prompt_bos


def test_unknown_model_lists_registered_names() -> None:
    with pytest.raises(UserError) as err:
        model_spec("gpt-17")
    assert all(name in str(err.value) for name in REGISTRY)
    assert "\n" not in str(err.value)


def test_registry_has_the_issue_names() -> None:
    for name in (
        "gemma-3-270m",
        "smollm2-135m",
        "llama-2-7b",
        "llama-2-13b",
        "llama-2-70b",
        "llama-2-13b-chat",
        "tiny-random",
    ):
        assert name in REGISTRY
    assert REGISTRY["llama-2-13b-chat"].chat and context_length("llama-2-13b") == 4096


def test_default_is_the_vanilla_gemma_and_only_base_models_say_so() -> None:
    assert DEFAULT_MODEL == "gemma-3-270m"
    gemma = REGISTRY["gemma-3-270m"]
    assert gemma.base and not gemma.chat and context_length("gemma-3-270m") == 32768
    smol = REGISTRY["smollm2-135m"]
    assert smol.chat and not smol.base and "Instruct" in smol.note and "instruction-tuned" in smol.note
    assert all(REGISTRY[n].base for n in ("llama-2-7b", "llama-2-13b", "llama-2-70b"))
    assert not REGISTRY["llama-2-13b-chat"].base and not REGISTRY["tiny-random"].base
    for spec in REGISTRY.values():
        assert spec.base or not re.search(r"\b(base|vanilla|pretrained)\b", spec.note), spec.name


class _Tokenizer:
    """A stand-in tokenizer: BOS id 2, and whether it adds BOS by default."""

    bos_token_id = 2

    def __init__(self, adds_bos: bool) -> None:
        self.adds_bos = adds_bos

    def __call__(self, text: object, add_special_tokens: bool = True) -> dict:
        def one(t: str) -> list[int]:
            return ([2] if add_special_tokens and self.adds_bos else []) + [ord(c) for c in t]

        return {"input_ids": [one(t) for t in text] if isinstance(text, list) else one(text)}


def test_bos_per_model_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    from icalign_nb.models import tokens

    monkeypatch.setattr(tokens, "_config", lambda source: None)  # a hub id whose config cannot be read
    adds, plain = _Tokenizer(True), _Tokenizer(False)
    assert prompt_bos("gemma-3-270m", adds) is True  # its tokenizer's convention
    assert prompt_bos("tiny-random", plain) is False
    assert prompt_bos("llama-2-13b", adds) is False  # the reference code: no special tokens
    assert prompt_bos("llama-2-13b-chat", adds) is True  # the reference's chat prompt: special tokens on
    assert prompt_bos("some-org/some-model", adds) is True
    assert encode_prompts(adds, ["ab", "c"], True) == [[2, 97, 98], [2, 99]]
    assert encode_prompts(adds, ["ab"], False) == [[97, 98]]


def test_dtype_bf16_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "cpu_has_fast_bf16", lambda: True)
    assert resolve_dtype("auto", "cpu") == "bfloat16"
    assert resolve_dtype("float32", "cpu") == "float32"
    monkeypatch.setattr(loading, "cpu_has_fast_bf16", lambda: False)
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("auto", "cuda") == "bfloat16"
    with pytest.raises(UserError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8", "cpu")


def test_bf16_detection_agrees_with_the_cpu_flags() -> None:
    from pathlib import Path

    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    if not flags:
        pytest.skip("no /proc/cpuinfo here")
    assert loading.cpu_has_fast_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


def test_tiny_random_loads_in_the_dtype_asked_on_cpu() -> None:
    import torch

    model = load_model("tiny-random", device="cpu", dtype="float32")
    assert model.dtype == torch.float32 and model.device.type == "cpu" and not model.training
    model = load_model("tiny-random", device="cpu", dtype="bfloat16")
    assert model.dtype == torch.bfloat16


def test_cuda_asked_without_cuda_is_one_line() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(UserError, match="CUDA is not available"):
        pick_device("cuda")
    assert pick_device() == "cpu"
