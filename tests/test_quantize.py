"""Weight-only int8 (`--dtype int8`): the kernel's products, the model it makes, and runs that record it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from icalign_nb.cli import main
from icalign_nb.errors import UserError
from icalign_nb.generation.quantize import Int4Linear, Int8Linear, quantised_kind
from icalign_nb.generation.runs import RunOptions, RunSpec, run_generation
from icalign_nb.generation.transformers_backend import TransformersBackend
from icalign_nb.generation.types import GenerationConfig, Request
from icalign_nb.retrieval.prompts import PAPER_STOP, zero_shot_prompt
from icalign_nb.retrieval.settings import RetrievalSettings


@pytest.mark.parametrize("layer", [Int8Linear, Int4Linear])
def test_quantised_linear_is_the_product_with_its_dequantised_weights(layer) -> None:
    """Through the packed kernel (a few rows) and through dequantised weights (a prefill's many rows):
    the product with the weights as quantised, which differ from the originals by rounding only."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 48, bias=True)
    for dtype in (torch.float32, torch.bfloat16):
        q = layer(linear.weight, linear.bias, dtype)
        dequantised = q.dequantised().float()
        if layer is Int8Linear:
            step = q.scales.float()[:, None]
        else:
            step = q.scales_zeros[..., 0].float().t().repeat_interleave(32, 1)
        assert ((dequantised - linear.weight).abs() <= step / 2 + 4e-3 * linear.weight.abs().max()).all()
        for rows in (3, q.packed_rows + 1):
            x = torch.randn(rows, 2, 96, dtype=dtype)
            want = x.float() @ dequantised.T + q.bias.float()
            tolerance = 1e-4 if dtype == torch.float32 else 0.1
            torch.testing.assert_close(q(x).float(), want, atol=tolerance, rtol=0.02)


def test_int8_layers_use_the_built_product_for_a_few_rows(built_kernels, monkeypatch) -> None:
    """With the kernels given, a product of at most the kernels' rows for int8 goes through them (and
    equals torch's packed kernel to rounding); more rows take torch's."""
    from icalign_nb.generation.quantize import use_kernels

    torch.manual_seed(3)
    model = torch.nn.Sequential(Int8Linear(torch.nn.Linear(64, 48).weight, None, torch.bfloat16))
    layer = model[0]
    x = torch.randn(built_kernels.rows[torch.int8] + 1, 64).bfloat16()
    alone = [layer.packed_product(x[:n]) for n in (1, len(x))]
    use_kernels(model, built_kernels)
    calls = []
    product = built_kernels.product
    monkeypatch.setattr(built_kernels, "product", lambda *a: calls.append(len(a[0])) or product(*a))
    for n, want in zip((1, len(x)), alone, strict=True):
        torch.testing.assert_close(layer.packed_product(x[:n]), want, atol=0.0, rtol=2**-7)
    assert calls == [1]


def test_int4_keeps_weights_that_are_already_4_bit() -> None:
    """Groups on a 16-level grid of their own (as a Q4_K file's: a step and an offset per 32 inputs,
    extreme codes not always used) come back as they were, up to the scales' rounding, where a fit of
    each group's spread into 15 steps would round most of them again; any other group spans 15 steps."""
    torch.manual_seed(2)
    out, groups = 64, 4
    step = torch.rand(out, groups, 1) * 0.01 + 0.001
    offset = torch.randn(out, groups, 1) * 0.01
    codes = torch.randint(2, 13, (out, groups, 32)).float()  # codes 0, 1, 13, 14, 15 left unused
    weight = (offset + step * codes).view(out, groups * 32)
    # in units of the grid's own step; bf16 rounds the scales, zeros and products (a spread fit of codes
    # 2-12 into 15 steps would be off by up to a third of a step)
    for dtype, tolerance in ((torch.float32, 1e-4), (torch.bfloat16, 0.12)):
        q = Int4Linear(weight, None, dtype)
        error = (q.dequantised().float() - weight).abs() / step.repeat_interleave(32, 1).view(out, -1)
        assert error.max() < tolerance
    noise = torch.randn(out, groups * 32)
    codes = Int4Linear(noise, None, torch.float32).codes.view(out, groups, 32)
    assert (codes.amin(-1) == 0).all() and (codes.amax(-1) == 15).all()


def test_fused_quantised_layers_equal_the_parts() -> None:
    from icalign_nb.generation.decoder import _fuse

    torch.manual_seed(1)
    for layer in (Int8Linear, Int4Linear):
        parts = [layer(torch.nn.Linear(64, n).weight, None, torch.float32) for n in (48, 16, 16)]
        x = torch.randn(2, 64)
        alone = torch.cat([p(x) for p in parts], -1)
        fused = _fuse(parts)
        torch.testing.assert_close(fused(x), alone, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.cat([p(x) for p in parts], -1), alone, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def int8() -> TransformersBackend:
    return TransformersBackend("tiny-random", batch_size=4, device="cpu", dtype="int8")


def test_the_int8_backend_quantises_every_linear_layer_and_the_head(int8) -> None:
    linears = [m for m in int8.model.modules() if isinstance(m, torch.nn.Linear)]
    assert not linears and quantised_kind(int8.model) == int8.dtype == "int8"
    assert isinstance(int8.model.lm_head, Int8Linear)
    assert int8.model.model.embed_tokens.weight.dtype == torch.bfloat16  # lookups keep their weights
    requests = [
        Request(f"q{i}", 0, zero_shot_prompt(q), PAPER_STOP, i) for i, q in enumerate(["Hi?", "Why?"])
    ]
    results = int8.generate_batch(requests, GenerationConfig(max_new_tokens=6, samples=1))
    assert all(r.n_generated_tokens > 0 for r in results)
    int4 = TransformersBackend("tiny-random", device="cpu", dtype="int4")
    assert int4.dtype == "int4" and isinstance(int4.model.lm_head, Int4Linear)
    assert all(
        r.n_generated_tokens > 0 for r in int4.generate_batch(requests, GenerationConfig(max_new_tokens=6))
    )


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
        "int4 vs float32",
        "int8 vs bfloat16",
        "int4 vs bfloat16",
    ]
    assert all("largest logit difference" in line and "identical for" in line for line in out[1:])
