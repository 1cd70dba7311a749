"""Notebook 07's study set-up: which systems an ablation study runs, and a second pool checked early."""

from __future__ import annotations

from pathlib import Path

import pytest

from icalign_nb.errors import UserError
from icalign_nb.retrieval.presets import ABLATIONS, K_SWEEP
from icalign_nb.study.ablations import ablation_study, pool_systems, usable_pool
from icalign_nb.study.study import Study


def test_the_study_runs_zero_shot_the_k_sweep_and_the_chosen_ablations_once_each() -> None:
    study = Study.from_notebook({"model": "tiny-random", "chat_model": "smollm2-135m", "limit": 2})
    every = ablation_study(study, k_sweep=True, ablations="all")
    assert every.presets == ("zero-shot", *K_SWEEP, *ABLATIONS) and every.chat_model is None
    few = ablation_study(study, k_sweep=False, ablations="paper-first, paper")
    assert few.presets == ("zero-shot", "paper", "paper-first")
    with pytest.raises(UserError, match="unknown ablation 'paper-nope'"):
        ablation_study(study, k_sweep=False, ablations="paper-nope")


def test_a_second_pool_is_its_own_system_with_its_own_run_and_id() -> None:
    study = Study.from_notebook({"model": "tiny-random", "limit": 2})
    (other,) = pool_systems(study, "alpaca")
    paper = study.system("paper")
    assert other.id == "paper@pool=alpaca" and other.id != paper.id
    assert other.run_dir != paper.run_dir and other.spec.retrieval.pool == "alpaca"
    assert other.label == f"{paper.label} [pool=alpaca]"


def test_a_second_pool_that_cannot_be_read_is_left_out_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert usable_pool("starter") == "starter" and usable_pool("") == ""
    missing = tmp_path / "nowhere.jsonl"
    assert usable_pool(str(missing)) == ""
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"second pool '{missing}' left out:")
