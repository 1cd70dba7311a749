"""The generation benchmark runs end to end (timing itself is not tested)."""

from __future__ import annotations

import pytest

from icalign_nb.cli import main


def test_bench_generation_prints_both_paths_and_speedup(capsys: pytest.CaptureFixture) -> None:
    args = ["bench", "generation", "--model", "tiny-random", "--queries", "2", "--max-new-tokens", "8"]
    assert main([*args, "--batch-size", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("reference-style") for line in out)
    assert any(line.startswith("package") for line in out)
    assert sum("decoded tokens per kept answer" in line for line in out) == 2
    assert out[-1].startswith("speedup: ") and float(out[-1].split()[1]) > 0
