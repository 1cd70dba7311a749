"""Score parsing, verdicts, judge specs and the paper prompt."""

from __future__ import annotations

from pathlib import Path

import pytest

from icalign_nb.errors import UserError
from icalign_nb.judging.parse import parse_scores, verdict
from icalign_nb.judging.prompts import default_prompt, paper_prompt
from icalign_nb.judging.spec import parse_judge_spec
from icalign_nb.judging.verdicts import load_release_verdicts


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("6 9\n\nAssistant 1 was vague.", (6.0, 9.0)),
        ("8.5 9", (8.5, 9.0)),
        ("8/10 9/10\nreasons", (8.0, 9.0)),
        ("(8, 7)", (8.0, 7.0)),
        ("[3,4]", (3.0, 4.0)),
        ("Assistant 1: 8 Assistant 2: 9", (8.0, 9.0)),
        ("\n\nScores:\n7 8\nwhy", (7.0, 8.0)),
        ("Overall.\nAssistant 1 receives 7 points while Assistant 2 receives 9.", (7.0, 9.0)),
        ("10 10", (10.0, 10.0)),
    ],
)
def test_scores_are_read_in_many_shapes(raw: str, expected: tuple[float, float]) -> None:
    assert parse_scores(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "   ", "garbage text", "Assistant 1 and 2 both tried", "Score: 8", "42 99"]
)
def test_replies_without_scores_are_none(raw: str) -> None:
    assert parse_scores(raw) is None


def test_verdicts_follow_the_paper_rule_and_the_margin() -> None:
    assert verdict(8, 7) == "win"
    assert verdict(7, 7) == "draw"
    assert verdict(6, 7) == "lose"
    assert verdict(None, 7) == "invalid"
    assert verdict(0.51, 0.50, margin=0.02) == "draw"
    assert verdict(0.55, 0.50, margin=0.02) == "win"


def test_every_release_judgment_file_parses_with_no_invalid(shared_data: Path) -> None:
    files = sorted((shared_data / "paper_release").glob("*_autoeval.jsonl"))
    assert len(files) == 7
    for f in files:
        table = load_release_verdicts(f)
        assert table.height in {300, 1500}, f
        assert (table["verdict"] == "invalid").sum() == 0, f.name


def test_paper_prompt_is_built_from_the_fetched_fastchat_row(data_env: Path) -> None:
    import json

    prompt = paper_prompt()
    summary = json.loads((data_env / "judge" / "paper_pairwise_judge.json").read_text())
    assert prompt.system == summary["system"]
    expected = summary["user_template"].format(
        question="Q?", answer_1="A1", answer_2="A2", instructions=summary["instructions"]
    )
    assert prompt.messages("Q?", "A1", "A2")[1]["content"] == expected


def test_default_prompt_keeps_the_output_contract() -> None:
    text = default_prompt().messages("Q?", "first", "second")[1]["content"]
    assert "first line" in text and "Assistant 1" in text and "first" in text and "second" in text


def test_judge_specs_name_and_proxy_flags() -> None:
    paper = parse_judge_spec("paper")
    assert (paper.model, paper.prompt, paper.temperature, paper.max_tokens) == (
        "gpt-4-0613",
        "paper",
        0.2,
        500,
    )
    assert not paper.proxy
    emb = parse_judge_spec("embedding", margin=0.0)
    assert emb.proxy and "embedding:minilm@256" in emb.label and "proxy" in emb.label
    assert parse_judge_spec("openai:gpt-4o-mini").proxy
    assert parse_judge_spec("openai:x").key != parse_judge_spec("openai:x", temperature=0.7).key
    with pytest.raises(UserError, match="unknown judge"):
        parse_judge_spec("gpt5")
