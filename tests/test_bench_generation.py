"""The generation benchmark runs end to end (timing itself is not tested)."""

from __future__ import annotations

import pytest

from icalign_nb.cli import main


@pytest.mark.slow
def test_bench_generation_prints_both_paths_and_speedup(capsys: pytest.CaptureFixture) -> None:
    args = ["bench", "generation", "--model", "tiny-random", "--limit", "2", "--max-new-tokens", "8"]
    assert main([*args, "--batch-size", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "2 queries x 5 samples" in out[0]  # --queries is --limit
    prefill = next(line for line in out if line.startswith("prefill: "))
    assert float(prefill.split()[1]) > 0 and "10 prompts" not in prefill  # 2 prompts, shared by 5 samples
    assert "(2 prompts" in prefill
    decode = next(line for line in out if line.startswith("decode: "))
    per_row, total = (float(decode.split(": ")[1].split()[0]), float(decode.split(", ")[1].split()[0]))
    assert 0 < per_row <= total and "at most 2)" in decode  # --batch-size caps the rows
    share = next(line for line in out if line.startswith("prefill share of the matmul peak: "))
    assert share.split(": ")[1].split("%")[0].isdigit() and "GFLOP/s" in share
    assert any(line.startswith("reference-style") for line in out)
    assert any(line.startswith("package") for line in out)
    assert sum("decoded tokens per kept answer" in line for line in out) == 2
    reference = float(
        next(line for line in out if line.startswith("reference-style")).split(" in ")[-1].rstrip("s")
    )
    package = float(next(line for line in out if line.startswith("package")).split(" in ")[-1].rstrip("s"))
    assert out[-1].startswith("speedup: ")
    assert float(out[-1].split()[1].rstrip("x")) == pytest.approx(reference / package, rel=0.02)
