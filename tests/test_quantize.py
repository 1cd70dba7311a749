"""Weight-only int8 (`--dtype int8`): the kernel's products, the model it makes, and runs that record it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from icalign_nb.cli import main
from icalign_nb.errors import UserError
from icalign_nb.generation.quantize import Int8Linear, is_int8
from icalign_nb.generation.runs import RunOptions, RunSpec, run_generation
from icalign_nb.generation.transformers_backend import TransformersBackend
from icalign_nb.generation.types import GenerationConfig, Request
from icalign_nb.retrieval.prompts import PAPER_STOP, zero_shot_prompt
from icalign_nb.retrieval.settings import RetrievalSettings


def test_int8_linear_is_the_product_with_its_dequantised_weights() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 40, bias=True)
    for dtype in (torch.float32, torch.bfloat16):
        q = Int8Linear(linear.weight, linear.bias, dtype)
        assert q.weight.dtype == torch.int8 and q.weight.abs().max() >= 125  # each row uses its range
        x = torch.randn(3, 5, 96, dtype=dtype)
        dequantised = q.weight.float() * q.scales.float()[:, None]
        want = x.float() @ dequantised.T + q.bias.float()
        tolerance = 1e-4 if dtype == torch.float32 else 0.1
        torch.testing.assert_close(q(x).float(), want, atol=tolerance, rtol=0.02)
        assert (
            (dequantised - linear.weight).abs() <= q.scales.float()[:, None] / 2 + 1e-7
        ).all()  # rounding only


@pytest.fixture(scope="module")
def int8() -> TransformersBackend:
    return TransformersBackend("tiny-random", batch_size=4, device="cpu", dtype="int8")


def test_the_int8_backend_quantises_every_linear_layer_and_the_head(int8) -> None:
    linears = [m for m in int8.model.modules() if isinstance(m, torch.nn.Linear)]
    assert not linears and is_int8(int8.model) and int8.dtype == "int8"
    assert isinstance(int8.model.lm_head, Int8Linear)
    assert int8.model.model.embed_tokens.weight.dtype == torch.bfloat16  # lookups keep their weights
    requests = [
        Request(f"q{i}", 0, zero_shot_prompt(q), PAPER_STOP, i) for i, q in enumerate(["Hi?", "Why?"])
    ]
    results = int8.generate_batch(requests, GenerationConfig(max_new_tokens=6, samples=1))
    assert all(r.n_generated_tokens > 0 for r in results)


def test_a_run_records_int8_and_is_not_resumed_in_another_dtype(tmp_path: Path, int8) -> None:
    spec = RunSpec(
        model="tiny-random",
        retrieval=RetrievalSettings(preset="zero-shot", limit=2),
        generation=GenerationConfig(max_new_tokens=4, samples=1),
        dtype="int8",
    )
    run_generation(tmp_path, spec, RunOptions(progress=False), backend=int8)
    assert json.loads((tmp_path / "config.json").read_text())["identity"]["dtype"] == "int8"
    with pytest.raises(UserError, match=r"\(dtype: 'int8' -> 'bfloat16'\)"):
        run_generation(tmp_path, replace(spec, dtype="bfloat16"), RunOptions(progress=False))


def test_int8_is_refused_off_the_cpu() -> None:
    from icalign_nb.models.loading import load_model

    model = load_model("tiny-random", device="cpu", dtype="float32")
    model.to("meta")
    with pytest.raises(UserError, match="CPU only"):
        TransformersBackend("tiny-random", model=model, dtype="int8")


@pytest.mark.slow
def test_bench_precision_compares_dtypes(capsys: pytest.CaptureFixture) -> None:
    args = ["bench", "precision", "--model", "tiny-random", "--limit", "2", "--max-new-tokens", "6"]
    assert main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "2 prompts" in out[0]
    assert [line.split(":")[0] for line in out[1:]] == [
        "bfloat16 vs float32",
        "int8 vs float32",
        "int8 vs bfloat16",
    ]
    assert all("largest logit difference" in line and "identical for" in line for line in out[1:])
