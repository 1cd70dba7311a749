"""The generation benchmark runs end to end (timing itself is not tested)."""

from __future__ import annotations

import re

import pytest

from icalign_nb.cli import main


def number(line: str, after: str) -> float:
    """The number that follows `after` in a line (thousands separators allowed)."""
    return float(re.search(re.escape(after) + r"\s*([\d,.]+)", line).group(1).replace(",", ""))


@pytest.mark.slow
def test_bench_generation_prints_both_paths_and_speedup(capsys: pytest.CaptureFixture) -> None:
    args = ["bench", "generation", "--model", "tiny-random", "--limit", "2", "--max-new-tokens", "8"]
    assert main([*args, "--batch-size", "2", "--peer", "llama-cpp"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "2 queries x 5 samples" in out[0]
    prefill = next(line for line in out if line.startswith("prefill: "))
    assert float(prefill.split()[1]) > 0 and "10 prompts" not in prefill  # 2 prompts, shared by 5 samples
    assert "(2 prompts" in prefill
    decode = next(line for line in out if line.startswith("decode: "))
    per_row, total = (float(decode.split(": ")[1].split()[0]), float(decode.split(", ")[1].split()[0]))
    assert 0 < per_row <= total and "at most 2)" in decode  # --batch-size caps the rows
    share = next(line for line in out if line.startswith("prefill share of the matmul peak: "))
    assert share.split(": ")[1].split("%")[0].isdigit() and "GFLOP/s" in share
    assert number(next(line for line in out if "bandwidth" in line), "bandwidth:") > 0
    matvec = next(line for line in out if line.startswith("matrix-vector: "))
    assert "9 products" in matvec  # 2 layers x (q/k/v, o, gate/up, down) + the LM head
    bound = next(line for line in out if line.startswith("bound: "))
    ms = number(matvec, "take")
    assert number(bound, "bound:") == pytest.approx(1e3 / ms, rel=0.02)
    assert number(bound, "decode per row at") == pytest.approx(100 * per_row * ms / 1e3, abs=1)
    memory = [line for line in out if line.startswith(("memory (", "memory: "))]
    assert len(memory) == 2 and "peak" in memory[0] and "predicted" in memory[0]
    assert 0.5 < number(memory[1], "peak / predicted") < 1.5
    peer = next(line for line in out if line.startswith("peer llama.cpp"))
    assert "not installed" in peer or "does not come from a GGUF file" in peer  # tiny-random has none
    assert any(line.startswith("reference-style") for line in out)
    assert any(line.startswith("package") for line in out)
    assert sum("decoded tokens per kept answer" in line for line in out) == 2
    reference = float(
        next(line for line in out if line.startswith("reference-style")).split(" in ")[-1].rstrip("s")
    )
    package = float(next(line for line in out if line.startswith("package")).split(" in ")[-1].rstrip("s"))
    assert out[-1].startswith("speedup: ")
    assert float(out[-1].split()[1].rstrip("x")) == pytest.approx(reference / package, rel=0.02)


def test_prefill_flops_count_quantised_layers_like_the_others() -> None:
    """A quantised model keeps its weights as buffers: its prefill FLOPs are still every linear layer's
    (the share of the matmul peak a quantised run prints would otherwise read several times too low)."""
    from icalign_nb.generation.quantize import quantise
    from icalign_nb.jobs.bench import prefill_flops
    from icalign_nb.models.loading import load_model

    plain = load_model("tiny-random", device="cpu", dtype="bfloat16")
    config = plain.config.get_text_config()
    head = 2 * config.hidden_size * config.vocab_size
    per_100_tokens = prefill_flops(plain, 100) - prefill_flops(plain, 0)  # weights and attention
    assert per_100_tokens > 2 * 100 * config.num_hidden_layers * config.hidden_size**2  # q and o at least
    for kind in ("int8", "int4"):
        quantised = quantise(load_model("tiny-random", device="cpu", dtype="bfloat16"), kind)
        assert prefill_flops(quantised, 100) == prefill_flops(plain, 100) > head
