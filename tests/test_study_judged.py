"""A study's systems judged: the head-to-head pairs (in-context against zero-shot, the chat model against
in-context) judged by the study's judge and cached, the job summary that carries them beside the win
rates, and the explorer's verdict lines naming what moved each verdict (runs written by hand: known
good, looped and empty answers to three starter queries)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from icalign_nb.analysis.winrates import Bootstrap
from icalign_nb.data.loaders import load_eval
from icalign_nb.judging.backends.fitted import FittedJudge
from icalign_nb.study.explore import exploration, verdict_reasons
from icalign_nb.study.head_to_head import HEAD_TO_HEAD_SCHEMA, head_to_heads
from icalign_nb.study.study import Study
from icalign_nb.study.summary import headline_text, job_summary
from icalign_nb.study.systems import judge_systems
from icalign_nb.views.explorer import Explorer

pytestmark = pytest.mark.slow  # the fitted judge loads its sentence encoder on a cache miss
BOOT = Bootstrap(n=50)


def write_run(run_dir: Path, queries: list[dict], answer: object) -> None:
    """A run's generations.jsonl: `answer(query row)` for every query, one sample each."""
    run_dir.mkdir(parents=True)
    rows = [
        {
            "query_id": q["id"],
            "sample": 0,
            "query": q["prompt"],
            "preset": run_dir.name,
            "demo_ids": [],
            "response": answer(q),
            "n_prompt_tokens": 10,
            "n_generated_tokens": 20,
            "stopped_by": "stop",
            "seconds": 0.1,
        }
        for q in queries
    ]
    (run_dir / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture()
def judged(tmp_path: Path) -> tuple[Study, list, object]:
    """Zero-shot loops a line, in-context answers with the eval set's reference, the chat model is empty."""
    study = Study(presets=("zero-shot", "paper"), limit=3, work_dir=str(tmp_path))
    queries = load_eval("starter").head(3).to_dicts()
    answers = {
        "zero-shot": lambda q: "\n".join(["I do not know what to say about this."] * 40),
        "paper": lambda q: q["reference"],
        "chat-smollm2_135m": lambda q: "",
    }
    systems = study.systems()
    for system in systems:
        write_run(system.run_dir, queries, answers[system.id])
    verdicts, spec = judge_systems(study, systems)
    return study, systems, (verdicts, spec)


def test_head_to_head_pairs_are_judged_both_ways_cached_and_in_the_summary(
    judged: tuple, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, systems, (verdicts, spec) = judged
    pairs = head_to_heads(study, systems, BOOT)
    assert pairs.schema == HEAD_TO_HEAD_SCHEMA
    assert pairs.select("system_a", "system_b").rows() == [
        ("paper", "zero-shot"),
        ("chat-smollm2_135m", "paper"),
    ]
    icl, chat = pairs.to_dicts()
    assert (icl["n"], icl["win"], icl["net"]) == (3, 1.0, 1.0) and icl["net_ci_low"] == 1.0
    assert (chat["lose"], chat["net"]) == (1.0, -1.0) and chat["judge"] == spec.label
    by_id = {s.id: s for s in systems}
    target = by_id["paper"].run_dir / "judgments.vs-zero-shot.jsonl"
    orders = sorted(json.loads(line)["order"] for line in target.read_text().splitlines())
    assert orders == ["baseline_first"] * 3 + ["system_first"] * 3
    assert "wins 100.0%" in capsys.readouterr().out

    # judged once: a second time every reply comes from the cache (the judge is never asked), the same
    def asked(_: FittedJudge, items: list, __: object) -> None:
        assert not items, f"asked the judge {len(items)} comparisons again"

    monkeypatch.setattr(FittedJudge, "judge", asked)
    assert head_to_heads(study, systems, BOOT).equals(pairs)

    summary = json.loads(json.dumps(job_summary(study, systems, verdicts, spec, BOOT, pairs)))
    assert summary["judge"] == spec.label and "fitted:shipped" in summary["judge"]
    assert [r["system_a"] for r in summary["head_to_head"]] == ["paper", "chat-smollm2_135m"]
    text = headline_text(summary).splitlines()
    assert len(text) == 3 and text[1].startswith(
        "head to head, in-context (retrieved demos) against zero-shot"
    )
    assert "net +100.0 points [+100.0, +100.0]" in text[1]
    assert job_summary(study, systems, verdicts, spec, BOOT)["head_to_head"] == []


def test_the_explorer_says_what_moved_each_verdict_in_words(judged: tuple) -> None:
    study, systems, (verdicts, _) = judged
    data = exploration(study, systems, verdicts)
    qid = data.query_ids[0]
    looped = data.reasons[("zero-shot", qid, 0)]
    assert len(looped) == 3 and all(isinstance(w, str) and isinstance(s, float) for w, s in looped)
    assert "more repeated lines" in dict(looped) and dict(looped)["more repeated lines"] < 0
    assert len(data.reasons) == 3 * len(systems)  # every verdict, each said of its system's answer
    page = Explorer(data).view_html(qid)
    words, share = looped[0]
    assert f"judge: lose (-) — {words} ({share:+.1f})" in page
    assert "three features of the answers that moved it most" in page
    # another judge names no features: the verdict line stays as it was
    assert verdict_reasons(replace(study, judge="embedding"), systems) == {}
