"""Model loading: dtype and device choices, and clear errors for bad names."""

from __future__ import annotations

import pytest

from icalign_nb.errors import UserError
from icalign_nb.models import REGISTRY, context_length, load_model, model_spec, pick_device


def test_unknown_model_lists_registered_names() -> None:
    with pytest.raises(UserError) as err:
        model_spec("gpt-17")
    assert all(name in str(err.value) for name in REGISTRY)
    assert "\n" not in str(err.value)


def test_registry_has_the_issue_names() -> None:
    for name in (
        "smollm2-135m",
        "llama-2-7b",
        "llama-2-13b",
        "llama-2-70b",
        "llama-2-13b-chat",
        "tiny-random",
    ):
        assert name in REGISTRY
    assert REGISTRY["llama-2-13b-chat"].chat and context_length("llama-2-13b") == 4096


def test_tiny_random_loads_fp32_on_cpu() -> None:
    import torch

    model = load_model("tiny-random", device="cpu")
    assert model.dtype == torch.float32 and model.device.type == "cpu" and not model.training


def test_cuda_asked_without_cuda_is_one_line() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(UserError, match="CUDA is not available"):
        pick_device("cuda")
    assert pick_device() == "cpu"
