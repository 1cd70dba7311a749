"""The paper's table reproduced exactly from the release's judgments."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from icalign_nb.analysis.paper_table import paper_table, reported_table
from icalign_nb.cli import main

EXPECTED = {
    ("llama2base-13B_zeroshot", "davinci003"): "11.4%",
    ("llama2-13B_icl-oasstgpt", "davinci003"): "78.4%",
    ("llama2-13B_icl-random-oasstgpt", "davinci003"): "62.9%",
    ("llama2chat-13B", "davinci003"): "84.1%",
    ("llama2-13B_icl-oasstgpt", "chatgpt"): "16.3%",
    ("llama2-13B_icl-random-oasstgpt", "chatgpt"): "10.7%",
    ("llama2chat-13B", "chatgpt"): "30.7%",
}


def test_release_reproduces_the_paper_numbers(shared_data: Path) -> None:
    table = paper_table(shared_data / "paper_release")
    got = {(r["system"], r["baseline"]): f"{100 * r['win']:.1f}%" for r in table.iter_rows(named=True)}
    assert got == EXPECTED
    assert (table["invalid"] == 0).all()
    for r in table.iter_rows(named=True):
        assert f"{100 * r['reported_win']:.1f}%" == EXPECTED[(r["system"], r["baseline"])]
        assert r["n"] == (1500 if r["baseline"] == "davinci003" else 300)
    reported = {(r["system"], r["baseline"]) for r in reported_table().iter_rows(named=True)}
    assert set(EXPECTED) <= reported and len(reported) == 12  # the nine released systems' reported rates


def test_paper_table_command_with_release_and_from_the_data_dir(
    shared_data: Path, data_env: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["paper-table", "--release", str(shared_data / "paper_release"), "--bootstrap", "100"]) == 0
    text = capsys.readouterr().out
    for label in ("Llama-2-13B zero-shot", "Llama-2-13B in-context (retrieved)", "Llama-2-chat-13B"):
        assert label in text
    for value in EXPECTED.values():
        assert value in text
    assert "arXiv:2308.04275" in text
    # Without --release: the pinned release files, here from ICALIGN_DATA_DIR.
    assert main(["paper-table", "--format", "json", "--bootstrap", "100"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["system"], r["baseline"]): f"{100 * r['win']:.1f}%" for r in rows} == EXPECTED


def test_any_release_file_of_the_same_format_works(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "paper_release" / "llama2chat-13B_vs_davinci003_autoeval.jsonl"
    shutil.copy(src, tmp_path / "my-model_vs_davinci003_autoeval.jsonl")
    table = paper_table(tmp_path)
    row = table.row(0, named=True)
    assert row["system"] == "my-model" and row["label"] == "my-model" and row["reported_win"] is None
    assert f"{100 * row['win']:.1f}" == "84.1"


def test_a_bad_release_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["paper-table", "--release", str(tmp_path)]) == 1
    assert "no *_vs_*_autoeval.jsonl" in capsys.readouterr().err
    (tmp_path / "x_vs_y_autoeval.jsonl").write_text('{"autoeval_text_list": ["8 7"]}\n{"other": 1}\n')
    assert main(["paper-table", "--release", str(tmp_path)]) == 1
    assert "x_vs_y_autoeval.jsonl:2" in capsys.readouterr().err


def test_the_figure_table_keeps_ids_and_shows_labels_with_intervals(shared_data: Path) -> None:
    from icalign_nb.analysis.winrates import Bootstrap
    from icalign_nb.study.release import figure_table

    table = figure_table(shared_data / "paper_release", boot=Bootstrap(n=100))
    assert {"recomputed_ci_low", "recomputed_ci_high", "label", "vs"} <= set(table.columns)
    row = table.filter(table["system"] == "llama2-13B_icl-oasstgpt").row(0, named=True)
    assert row["label"] == "Llama-2-13B in-context (retrieved)" and row["vs"] == "text-davinci-003"
    assert row["recomputed_ci_low"] < row["recomputed"] < row["recomputed_ci_high"]
    reported = figure_table(None)  # without the release: the reported numbers of all nine systems
    assert reported.height == 12 and reported["label"].null_count() == 0
