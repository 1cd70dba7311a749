"""Real answers from smollm2-135m, with and without in-context demonstrations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icalign_nb.generation.rundir import generations_frame
from icalign_nb.generation.runs import RunOptions, RunSpec, run_generation
from icalign_nb.generation.transformers_backend import TransformersBackend
from icalign_nb.generation.types import GenerationConfig
from icalign_nb.retrieval.settings import RetrievalSettings

CONFIG = GenerationConfig(max_new_tokens=48, samples=1)


@pytest.mark.slow
def test_smollm2_answers_with_and_without_demos(tmp_path: Path) -> None:
    backend = TransformersBackend("smollm2-135m", batch_size=2)
    options = RunOptions(batch_size=2, progress=False)
    answers = {}
    for preset in ("zero-shot", "paper-short"):
        spec = RunSpec(
            model="smollm2-135m", retrieval=RetrievalSettings(preset=preset, limit=2), generation=CONFIG
        )
        summary = run_generation(tmp_path / preset, spec, options, backend=backend)
        assert summary.generated == 2
        frame = generations_frame(tmp_path / preset)
        for row in frame.iter_rows(named=True):
            assert row["stopped_by"] in {"stop", "eos", "length"} and 0 < row["n_generated_tokens"] <= 48
            assert "\nQuestion:" not in row["response"] and row["response"] == row["response"].strip()
        answers[preset] = frame.sort("query_id")
    assert answers["zero-shot"]["demo_ids"].list.len().to_list() == [0, 0]
    assert min(answers["paper-short"]["demo_ids"].list.len().to_list()) >= 1
    assert answers["paper-short"]["n_prompt_tokens"].min() > answers["zero-shot"]["n_prompt_tokens"].max()
    assert any(len(r) > 0 for r in answers["paper-short"]["response"].to_list())
    shown = {p: f["response"][0] for p, f in answers.items()}
    print(json.dumps({"query": answers["zero-shot"]["query"][0], **shown}, indent=1))
