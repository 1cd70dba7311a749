"""Win rates, prompt-level bootstrap, order combination, breakdowns, paired comparison, `icalign winrate`."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from icalign_nb.analysis.breakdowns import breakdown, item_features, run_features
from icalign_nb.analysis.winrates import (
    Bootstrap,
    bootstrap_ratio,
    combine_orders,
    paired_comparison,
    win_rates,
)
from icalign_nb.cli import main
from icalign_nb.judging.verdicts import SCHEMA, load_verdicts
from icalign_nb.retrieval.retriever import Candidate, Retrieval

JSON_KEYS = [
    "system",
    "baseline",
    "n",
    "win",
    "draw",
    "lose",
    "ci_low",
    "ci_high",
    "mean_score_system",
    "mean_score_baseline",
    "invalid",
]


def verdict_table(
    verdicts: list[list[str]], system: str = "sys", order: str = "system_first"
) -> pl.DataFrame:
    """Rows for prompts x samples of verdicts (scores 8/5 for win, 5/5 draw, 5/8 lose, None invalid)."""
    scores = {"win": (8.0, 5.0), "draw": (5.0, 5.0), "lose": (5.0, 8.0), "invalid": (None, None)}
    rows = []
    for q, per_prompt in enumerate(verdicts):
        for s, v in enumerate(per_prompt):
            a, b = scores[v]
            rows.append(
                {
                    "system": system,
                    "baseline": "base",
                    "judge": "j",
                    "query_id": f"q{q}",
                    "sample": s,
                    "order": order,
                    "score_system": a,
                    "score_baseline": b,
                    "verdict": v,
                }
            )
    return pl.DataFrame(rows, schema=SCHEMA)


def test_fractions_exclude_invalid_and_count_it() -> None:
    table = win_rates(verdict_table([["win", "draw"], ["lose", "invalid"], ["win", "win"]]), Bootstrap(200))
    row = table.row(0, named=True)
    assert row["n"] == 5 and row["invalid"] == 1
    assert row["win"] == pytest.approx(3 / 5) and row["draw"] == pytest.approx(1 / 5)
    assert row["lose"] == pytest.approx(1 / 5)
    assert row["mean_score_system"] == pytest.approx((8 + 5 + 5 + 8 + 8) / 5)
    assert row["ci_low"] <= row["win"] <= row["ci_high"]


def test_bootstrap_resamples_prompts_not_samples() -> None:
    # 20 prompts, 5 identical samples each: the interval must be as wide as 20 prompts allow,
    # not as narrow as 100 independent samples would make it.
    rng = np.random.default_rng(1)
    per_prompt = [["win" if rng.random() < 0.5 else "lose"] * 5 for _ in range(20)]
    wide = win_rates(verdict_table(per_prompt), Bootstrap(2000, seed=3)).row(0, named=True)
    flat = [[v] for p in per_prompt for v in p]  # the same verdicts as 100 separate prompts
    narrow = win_rates(verdict_table(flat), Bootstrap(2000, seed=3)).row(0, named=True)
    assert wide["win"] == narrow["win"]
    assert (wide["ci_high"] - wide["ci_low"]) > 1.8 * (narrow["ci_high"] - narrow["ci_low"])


def test_bootstrap_is_seeded() -> None:
    num, den = np.array([1.0, 0, 3, 2]), np.array([3.0, 2, 3, 4])
    assert bootstrap_ratio(num, den, Bootstrap(500, seed=7)) == bootstrap_ratio(
        num, den, Bootstrap(500, seed=7)
    )


def test_seeded_interval_does_not_depend_on_row_order() -> None:
    cycle = ["win", "lose", "lose", "draw", "win", "lose", "win"]
    table = verdict_table([[cycle[(3 * i) % 7], cycle[(5 * i + 1) % 7]] for i in range(40)])
    ci = {
        win_rates(table.sample(fraction=1.0, shuffle=True, seed=s), Bootstrap(300, seed=1)).row(
            0, named=True
        )["ci_low"]
        for s in range(5)
    }
    assert len(ci) == 1


def test_swap_combination_rule() -> None:
    first = verdict_table([["win"], ["win"], ["lose"], ["draw"], ["invalid"], ["invalid"]])
    second = verdict_table(
        [["win"], ["lose"], ["draw"], ["draw"], ["win"], ["invalid"]], order="baseline_first"
    )
    combined = combine_orders(pl.concat([first, second]))
    assert combined["verdict"].to_list() == ["win", "draw", "draw", "draw", "win", "invalid"]
    assert set(combined["order"]) == {"combined"}


def test_breakdowns_and_features(tmp_path: Path) -> None:
    generations = [
        {
            "query_id": f"q{q}",
            "sample": 0,
            "query": "word " * (q + 1),
            "response": "a " * (10 * q + 1),
            "demo_ids": ["d"] * (q % 3),
        }
        for q in range(12)
    ]
    baseline = pl.DataFrame(
        {
            "id": [f"q{q}" for q in range(12)],
            "prompt": [g["query"] for g in generations],
            "response": ["b " * 20] * 12,
        }
    )
    retrievals = {
        (f"q{q}", None): Retrieval(
            f"q{q}",
            "",
            "paper",
            ["a"],
            [Candidate("a", 1, q / 10, 5, True, "kept"), Candidate("b", 2, 9.0, 900, False, "over_budget")],
            "",
            [],
        )
        for q in range(12)
    }
    eval_set = pl.DataFrame({"id": [f"q{q}" for q in range(12)], "category": ["koala", "vicuna"] * 6})
    features = item_features(generations, baseline, eval_set, retrievals)
    assert features["length_diff"].to_list()[0] == 1 - 20
    assert features["mean_similarity"].to_list()[3] == pytest.approx(0.3)
    assert features["n_demos"].to_list()[:3] == [0, 1, 2]
    verdicts = verdict_table([["win" if q > 5 else "lose"] for q in range(12)])
    by_demos = breakdown(verdicts, features, "n_demos", boot=Bootstrap(100))
    assert by_demos["n"].sum() == 12 and set(by_demos["n_demos"]) == {0, 1, 2}
    by_len = breakdown(verdicts, features, "length_diff", bins=3, boot=Bootstrap(100))
    assert by_len.height == 3 and by_len["win"].to_list() == sorted(by_len["win"].to_list())
    by_subset = breakdown(verdicts, features, "subset", boot=Bootstrap(100))
    assert set(by_subset["subset"]) == {"koala", "vicuna"} and by_subset["n"].to_list() == [6, 6]


def test_paired_comparison_on_shared_prompts() -> None:
    a = verdict_table([["win", "win"]] * 30 + [["lose", "lose"]] * 10, system="retrieved")
    b = verdict_table([["win", "lose"]] * 40, system="random")
    result = paired_comparison(a, b, Bootstrap(1000, seed=0))
    assert result["prompts"] == 40 and result["win_a"] == pytest.approx(0.75) and result["win_b"] == 0.5
    assert result["diff"] == pytest.approx(0.25) and 0 < result["ci_low"] < result["diff"] < result["ci_high"]
    assert result["p_value"] < 0.05


def write_run(
    root: Path, name: str, verdicts: list[str], judge: str = "embedding:minilm (proxy judge)"
) -> Path:
    run = root / name
    run.mkdir()
    rows = [
        {
            "query_id": f"q{i}",
            "sample": 0,
            "order": "system_first",
            "score_system": 1.0,
            "score_baseline": 0.0,
            "verdict": v,
            "raw": "1 0",
            "judge": judge,
            "baseline": "davinci003",
        }
        for i, v in enumerate(verdicts)
    ]
    (run / "judgments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_winrate_command_formats(tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture) -> None:
    run = write_run(tmp_path, "my-run", ["win", "win", "lose", "draw"])
    release = shared_data / "paper_release" / "llama2chat-13B_vs_chatgpt_autoeval.jsonl"
    assert (
        main(
            [
                "winrate",
                str(run),
                str(release),
                "--format",
                "json",
                "--bootstrap",
                "200",
                "--bootstrap-seed",
                "1",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert [list(o) for o in out] == [JSON_KEYS, JSON_KEYS]
    assert out[0]["system"].startswith("my-run [") and "proxy judge" in out[0]["system"]
    assert out[0]["win"] == 0.5 and out[0]["n"] == 4 and out[0]["baseline"] == "davinci003"
    assert out[1]["system"] == "llama2chat-13B" and out[1]["baseline"] == "chatgpt"
    assert round(out[1]["win"], 3) == 0.307 and out[1]["n"] == 300

    assert main(["winrate", str(run), "--format", "csv", "--bootstrap", "50"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["system"] == "my-run" and "proxy judge" in rows[0]["judge"]
    assert main(["winrate", str(run), "--bootstrap", "50"]) == 0
    assert "50.0%" in capsys.readouterr().out


def test_bad_judgments_name_file_line_and_field(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "judgments.jsonl"
    bad.write_text(
        json.dumps(
            {
                "query_id": "q",
                "sample": 0,
                "order": "system_first",
                "score_system": 1,
                "score_baseline": 2,
                "verdict": "win",
            }
        )
        + "\n"
        + json.dumps({"query_id": "q"})
        + "\n"
    )
    assert main(["winrate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2: field 'sample'" in err and len(err.strip().splitlines()) == 1
    bad.write_text(
        '{"query_id": "q", "sample": 0, "order": "x", "score_system": 1, "score_baseline": 2, '
        '"verdict": "great"}\n'
    )
    with pytest.raises(Exception, match=r"judgments.jsonl:1: field 'verdict'"):
        load_verdicts(bad)
    assert main(["winrate", str(tmp_path / "missing_dir")]) == 1


def test_run_features_and_cluster_breakdown(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    prompts = [
        "How do I bake bread?",
        "Best bread flour?",
        "Sourdough starter tips?",
        "What is a black hole?",
        "How far is Mars?",
        "Why is the sky blue?",
    ]
    rows = [
        {"query_id": f"q{i}", "sample": 0, "query": p, "response": "word " * (i + 1), "demo_ids": ["a"] * i}
        for i, p in enumerate(prompts)
    ]
    (run / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = tmp_path / "base.jsonl"
    base.write_text("".join(json.dumps({"prompt": p, "response": "x y"}) + "\n" for p in prompts))
    clusters = pl.DataFrame({"query_id": [f"q{i}" for i in range(6)], "cluster": ["bread"] * 3 + ["sky"] * 3})
    features = run_features(run, str(base), clusters=clusters)
    assert features["length_diff"].to_list() == [-1, 0, 1, 2, 3, 4]
    assert features["n_demos"].to_list() == list(range(6))
    assert features["cluster"].n_unique() == 2
    verdicts = verdict_table([["win"], ["win"], ["win"], ["lose"], ["lose"], ["lose"]])
    by_cluster = breakdown(verdicts, features, "cluster", boot=Bootstrap(50))
    assert by_cluster["n"].sum() == 6 and by_cluster.height == 2


def test_the_statistics_commands_import_no_model_library(tmp_path: Path) -> None:
    run = write_run(tmp_path, "sys", ["win", "lose", "win"])
    other = write_run(tmp_path, "other", ["lose", "lose", "win"])
    code = (
        "import sys\n"
        "from icalign_nb.cli import main\n"
        f"assert main(['winrate', {str(run)!r}]) == 0\n"
        f"assert main(['compare', {str(run)!r}, {str(other)!r}]) == 0\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'matplotlib', 'sklearn') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "heavy: []"


def _length_case(win_of: object, n_prompts: int = 200) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Verdicts of one system whose win depends on the length difference as `win_of(delta, i)` says."""
    rng = np.random.default_rng(0)
    deltas = rng.normal(300, 400, n_prompts).round().astype(int)
    outcomes = [["win" if win_of(d, i) else "lose"] for i, d in enumerate(deltas)]
    verdicts = verdict_table(outcomes)
    lengths = pl.DataFrame(
        {"query_id": [f"q{i}" for i in range(n_prompts)], "sample": [0] * n_prompts, "length_diff": deltas}
    )
    return verdicts, lengths


def test_length_control_removes_a_pure_length_preference_and_keeps_a_real_one() -> None:
    from icalign_nb.analysis.length import length_controlled

    rng = np.random.default_rng(1)
    noise = rng.random(400)
    # a judge that only rewards length: longer wins 90% of the time, shorter 10%
    verdicts, lengths = _length_case(lambda d, i: noise[i] < (0.9 if d > 0 else 0.1))
    raw = (verdicts["verdict"] == "win").mean()
    lc = length_controlled(verdicts, lengths, Bootstrap(200))
    assert raw > 0.6 and abs(lc["lc_win"] - 0.5) < 0.12 and lc["length_slope"] > 1
    assert lc["lc_ci_low"] < lc["lc_win"] < lc["lc_ci_high"]
    # a system that wins 70% whatever the length keeps about 70%
    verdicts, lengths = _length_case(lambda d, i: noise[i] < 0.7)
    lc = length_controlled(verdicts, lengths, Bootstrap(200))
    assert abs(lc["lc_win"] - 0.7) < 0.08 and abs(lc["length_slope"]) < 0.6


def test_winrate_length_controlled_on_the_release(shared_data: Path, capsys: pytest.CaptureFixture) -> None:
    release = shared_data / "paper_release"
    files = [
        str(release / f"{s}_vs_davinci003_autoeval.jsonl")
        for s in ("llama2-13B_icl-oasstgpt", "llama2chat-13B")
    ]
    assert main(["winrate", "--length-controlled", "--format", "json", "--bootstrap", "200", *files]) == 0
    rows = {r["system"]: r for r in json.loads(capsys.readouterr().out)}
    for row in rows.values():
        assert row["lc_win"] < row["win"] and row["mean_length_diff"] > 0 and row["length_slope"] > 0
        assert row["lc_ci_low"] <= row["lc_win"] <= row["lc_ci_high"]
    assert rows["llama2-13B_icl-oasstgpt"]["win"] == pytest.approx(0.784, abs=1e-3)
