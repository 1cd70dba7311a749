"""The local transformers judge on a real (tiny, random) model: garbage replies are kept as invalid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icalign_nb.judging.run import JudgeRun, run_judge
from icalign_nb.judging.spec import parse_judge_spec

pytestmark = pytest.mark.slow


@pytest.mark.slow
def test_tiny_random_judge_keeps_invalid_replies_with_raw_text(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    rows = [
        {
            "query_id": f"q{i}",
            "sample": 0,
            "query": f"What is {i} plus {i}?",
            "preset": "zero-shot",
            "demo_ids": [],
            "response": f"It is {2 * i}.",
            "n_prompt_tokens": 5,
            "n_generated_tokens": 4,
            "stopped_by": "eos",
            "seconds": 0.1,
        }
        for i in range(3)
    ]
    (run / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    baseline = tmp_path / "base.jsonl"
    baseline.write_text(
        "".join(json.dumps({"prompt": r["query"], "response": "No idea."}) + "\n" for r in rows)
    )
    spec = parse_judge_spec("local:tiny-random", max_tokens=12, device="cpu")
    summary = run_judge(JudgeRun(run, str(baseline), spec))
    out = [json.loads(line) for line in (run / "judgments.jsonl").read_text().splitlines()]
    assert len(out) == 3 and summary.total == 3
    assert [r["query_id"] for r in out] == ["q0", "q1", "q2"]
    for r in out:
        assert r["verdict"] in {"win", "draw", "lose", "invalid"}
        assert isinstance(r["raw"], str) and r["raw"]  # the raw text is kept, whatever it is
        assert r["judge"] == "local:tiny-random/default (proxy judge)"
    assert summary.verdicts["invalid"] == sum(r["verdict"] == "invalid" for r in out) >= 1
    again = run_judge(JudgeRun(run, str(baseline), spec))
    assert again.requested == 0
