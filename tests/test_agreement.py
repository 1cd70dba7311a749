"""Agreement with GPT-4 counts over GPT-4's decisive verdicts, the judge's draws and gaps as misses."""

from __future__ import annotations

import polars as pl
import pytest

from icalign_nb.analysis.agreement import judge_agreement
from icalign_nb.analysis.head_to_head import head_to_head
from icalign_nb.analysis.judge_validation import validation_table, win_rate_spearman
from icalign_nb.analysis.winrates import Bootstrap
from icalign_nb.judging.verdicts import SCHEMA


def frame(verdicts: list[str], judge: str, order: str = "system_first", baseline: str = "b") -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "system": "s",
                "baseline": baseline,
                "judge": judge,
                "query_id": f"q{i // 2}",
                "sample": i % 2,
                "order": order,
                "score_system": None,
                "score_baseline": None,
                "verdict": v,
            }
            for i, v in enumerate(verdicts)
        ],
        schema=SCHEMA,
    )


def test_a_judge_that_abstains_gains_nothing() -> None:
    gpt4 = frame(["win", "win", "lose", "lose", "draw", "invalid"], "gpt-4")
    judge = frame(["win", "draw", "lose", "win", "win", "win"], "proxy")
    row = judge_agreement(judge, gpt4, Bootstrap(n=50))
    # 4 decisive GPT-4 verdicts: matched on the 1st and 3rd; the draw on the 2nd is a miss
    assert (row["n"], row["decisive"], row["agreement"]) == (5, 4, 0.5)
    assert row["win_reference"] == pytest.approx(2 / 5) and row["win_judge"] == pytest.approx(3 / 5)
    assert row["draw_judge"] == pytest.approx(1 / 5) and row["draw_reference"] == pytest.approx(1 / 5)
    missing = judge_agreement(judge.head(3), gpt4, Bootstrap(n=50))  # items it never judged are misses too
    assert missing["decisive"] == 4 and missing["agreement"] == 0.5 and missing["judge_invalid"] == 2


def test_validation_tables_and_spearman_by_judge() -> None:
    rows = []
    for system, wins in (("a", 8), ("b", 5), ("c", 2)):
        for i in range(10):
            ref = "win" if i < wins else "lose"
            rows += [
                {
                    "system": system,
                    "baseline": "davinci003",
                    "query_id": f"q{i}",
                    "sample": 0,
                    "ref": ref,
                    "judge": j,
                    "verdict": v,
                }
                for j, v in (("good", ref), ("flipped", "lose" if ref == "win" else "win"))
            ]
    table = validation_table(pl.DataFrame(rows), Bootstrap(n=50), pooled=False)
    good = table.filter(pl.col("judge") == "good")
    assert good["agreement"].to_list() == [1.0, 1.0, 1.0]
    spearman = {r["judge"]: r["spearman"] for r in win_rate_spearman(table, ["davinci003"]).to_dicts()}
    assert spearman == {"good": pytest.approx(1.0), "flipped": pytest.approx(-1.0)}


def test_head_to_head_counts_both_orders_once_per_item() -> None:
    verdicts = pl.concat(
        [
            frame(["win", "lose", "win", "draw"], "j", "system_first", "run:b"),
            frame(["win", "win", "win", "draw"], "j", "baseline_first", "run:b"),
        ]
    )
    result = head_to_head(verdicts, Bootstrap(n=100))
    # items: (win, win) -> win; (lose, win) -> draw (the orders disagree); (win, win) -> win; draws -> draw
    assert (result["system_b"], result["n"], result["win"], result["lose"]) == ("b", 4, 0.5, 0.0)
    assert result["net"] == 0.5 and result["net_ci_low"] <= 0.5 <= result["net_ci_high"]
    # shares from the counts: with no draw, the draw share is exactly 0 (30/44 + 14/44 is not 1 in floats)
    no_draw = head_to_head(frame(["win"] * 30 + ["lose"] * 14, "j", baseline="run:b"), Bootstrap(n=20))
    assert no_draw["draw"] == 0.0 and no_draw["win"] + no_draw["lose"] == pytest.approx(1.0)
