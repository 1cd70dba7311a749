"""Pool/eval leakage: demos that are near-duplicates of their query are found and reported."""

from __future__ import annotations

import json
from pathlib import Path

from icalign_nb.analysis.leakage import leaked_demos, near_duplicate


def test_near_duplicates_are_copies_or_close_rewordings_not_topic_neighbours() -> None:
    query = "What are the main differences between a crocodile and an alligator?"
    assert near_duplicate(query, query)
    assert near_duplicate(query, "what are the main differences between a crocodile and an alligator")
    assert near_duplicate(query, "Hi! " + query + " Please answer briefly, thanks.")
    assert not near_duplicate(query, "How long do alligators live in the wild?")
    assert not near_duplicate("Hi?", "Hi? How are you today, my friend?")  # too short to call a copy


def test_a_runs_leaked_demos_are_listed(tmp_path: Path) -> None:
    pool = tmp_path / "pool.jsonl"
    rows = [
        {"id": "d1", "prompt": "Explain why the sky is blue to a child.", "response": "Light scatters."},
        {"id": "d2", "prompt": "Give me a recipe for pancakes.", "response": "Flour, eggs, milk."},
    ]
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    run.mkdir()
    config = {"identity": {"retrieval": {"pool": str(pool), "eval": "starter", "fields": None}}}
    (run / "config.json").write_text(json.dumps(config))
    retrieval = {
        "query_id": "q1",
        "query": "Explain why the sky is blue to a child",
        "preset": "paper",
        "demo_ids": ["d2", "d1"],
        "candidates": [],
        "prompt": "...",
        "stop": [],
        "sample": None,
    }
    (run / "retrievals.jsonl").write_text(json.dumps(retrieval) + "\n")
    leaks = leaked_demos(run)
    assert leaks.select("query_id", "demo_id").rows() == [("q1", "d1")]
    assert leaks["containment"][0] == 1.0


def test_the_command_reports_each_run(tmp_path: Path, capsys) -> None:
    from icalign_nb.cli import main

    test_a_runs_leaked_demos_are_listed(tmp_path)
    capsys.readouterr()
    assert main(["leakage", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "1 near-duplicate demo(s) of their query, in 1 query(ies)" in out and "d1" in out


def test_a_pool_checked_against_an_eval_set_and_written_without_its_leaks(tmp_path: Path, capsys) -> None:
    from icalign_nb.cli import main
    from icalign_nb.data.loaders import load_pool

    pool = tmp_path / "pool.jsonl"
    rows = [
        {"prompt": "How can I improve my time management skills?", "response": "Plan your week."},
        {"prompt": "Name three rivers in Africa.", "response": "Nile, Congo, Niger."},
    ]
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"prompt": "how can I improve my time-management skills"}) + "\n")
    clean = tmp_path / "clean.jsonl"
    capsys.readouterr()
    assert main(["leakage", "--pool", str(pool), "--eval", str(evals), "--out", str(clean)]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "1 of 2 demos" in out and "1 near-duplicate demo(s)" in out
    assert load_pool(clean)["prompt"].to_list() == ["Name three rivers in Africa."]
    assert main(["leakage", "--pool", str(pool)]) == 1  # a pool needs an eval set
