"""Real answers from the registry's small models: gemma-3-270m (base) with and without in-context
demonstrations, and SmolLM2-135M-Instruct through its chat template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icalign_nb.errors import UserError
from icalign_nb.generation.rundir import generations_frame
from icalign_nb.generation.runs import RunOptions, RunSpec, run_generation
from icalign_nb.generation.transformers_backend import TransformersBackend
from icalign_nb.generation.types import GenerationConfig
from icalign_nb.retrieval.settings import RetrievalSettings

CONFIG = GenerationConfig(max_new_tokens=48, samples=1)
OPTIONS = RunOptions(progress=False)


@pytest.mark.slow
def test_gemma_answers_with_and_without_demos(tmp_path: Path) -> None:
    backend = TransformersBackend("gemma-3-270m")
    answers = {}
    for preset in ("zero-shot", "paper-short"):
        spec = RunSpec(
            model="gemma-3-270m", retrieval=RetrievalSettings(preset=preset, limit=2), generation=CONFIG
        )
        summary = run_generation(tmp_path / preset, spec, OPTIONS, backend=backend)
        assert summary.generated == 2
        identity = json.loads((tmp_path / preset / "config.json").read_text())["identity"]
        assert identity["bos"] is True and identity["dtype"] == backend.dtype  # Gemma is trained with <bos>
        frame = generations_frame(tmp_path / preset)
        for row in frame.iter_rows(named=True):
            assert row["stopped_by"] in {"stop", "eos", "length"} and 0 < row["n_generated_tokens"] <= 48
            assert "\nQuestion:" not in row["response"] and row["response"] == row["response"].strip()
            bare = len(backend.tokenizer(row["query"], add_special_tokens=False)["input_ids"])
            assert row["n_prompt_tokens"] > bare
        answers[preset] = frame.sort("query_id")
    assert answers["zero-shot"]["demo_ids"].list.len().to_list() == [0, 0]
    assert min(answers["paper-short"]["demo_ids"].list.len().to_list()) >= 1
    assert answers["paper-short"]["n_prompt_tokens"].min() > answers["zero-shot"]["n_prompt_tokens"].max()
    assert all(len(r) > 0 for p in answers for r in answers[p]["response"].to_list())
    shown = {p: f["response"][0] for p, f in answers.items()}
    print(json.dumps({"query": answers["zero-shot"]["query"][0], **shown}, indent=1))


@pytest.mark.slow
def test_smollm2_instruct_answers_through_its_chat_template(tmp_path: Path) -> None:
    spec = RunSpec(
        model="smollm2-135m", retrieval=RetrievalSettings(preset="zero-shot", limit=2), generation=CONFIG
    )
    run_generation(tmp_path / "chat", spec, OPTIONS)
    frame = generations_frame(tmp_path / "chat")
    assert frame.height == 2 and frame["preset"].to_list() == ["zero-shot"] * 2
    identity = json.loads((tmp_path / "chat" / "config.json").read_text())["identity"]
    assert identity["bos"] is False  # the chat template carries its own special tokens
    assert frame["n_prompt_tokens"].min() > 20  # the template (system turn) wraps the query
    with pytest.raises(UserError, match="is a chat model"):
        run_generation(tmp_path / "icl", RunSpec(model="smollm2-135m"), OPTIONS)
