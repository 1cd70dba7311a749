"""The fitted judge's commands on small real data: a refit, agreement with AlpacaEval annotations and
release files (shipped, refitted, out of fit), and head to head between two runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icalign_nb.cli import main

SYSTEMS = ("llama2chat-13B", "llama2base-13B_zeroshot")
MODELS = ("alpaca-7b", "vicuna-13b")


def head_lines(src: Path, dest: Path, n: int) -> None:
    dest.write_text("".join(src.read_text().splitlines(keepends=True)[:n]))


@pytest.fixture()
def small_verdicts(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, list[Path], Path]:
    """A release folder with two systems on 12 prompts, two annotation files of 30 instructions, and
    GPT-4's reference answers for them. The cut release files keep their names, so their pins are lifted
    here (a file under a pinned name must otherwise be the pinned file)."""
    from dataclasses import replace

    from icalign_nb.data import pins

    release = tmp_path / "release"
    release.mkdir()
    src = shared_data / "paper_release"
    cut = ["davinci003_results.jsonl", "chatgpt_results.jsonl"]
    cut += [f"{s}_{kind}.jsonl" for s in SYSTEMS for kind in ("outputs_temp0.7", "vs_davinci003_autoeval")]
    for name in cut:
        head_lines(src / name, release / name, 12)
        monkeypatch.setitem(pins.BY_NAME, name, replace(pins.BY_NAME[name], sha256=None))
    notes = []
    for model in MODELS:
        rows = json.loads((shared_data / "alpaca_eval" / "annotations" / f"{model}.json").read_text())
        notes.append(tmp_path / f"{model}.json")
        notes[-1].write_text(json.dumps(rows[:30]))
    reference = tmp_path / "gpt4.json"
    reference.write_text(
        json.dumps(json.loads((shared_data / "alpaca_eval" / "gpt4_0613.json").read_text())[:30])
    )
    return release, notes, reference


def run_json(capsys: pytest.CaptureFixture, args: list[str]) -> list[dict]:
    capsys.readouterr()
    assert main(args) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_refit_then_agreement_with_annotations_and_release(
    small_verdicts: tuple[Path, list[Path], Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    release, notes, reference = small_verdicts
    out = tmp_path / "judge.json"
    args = ["--release", str(release), "--annotations", *map(str, notes), "--reference", str(reference)]
    assert main(["judge-fit", *args, "--out", str(out), "--bootstrap", "20"]) == 0
    printed = capsys.readouterr().out
    assert "model with a reference" in printed and f"wrote {out}" in printed
    body = json.loads(out.read_text())
    assert set(body["fit_data"]["sources"]) == {f.name for f in [*release.glob("*_autoeval.jsonl"), *notes]}
    assert body["fit_data"]["comparisons"] > 2 * 60 + 2 * 30  # the verdicts, and constructed losses
    validated = {(v["system"], v["baseline"]) for v in body["validation"]["systems"]}
    assert ("llama2chat-13B", "davinci003") in validated and ("alpaca-7b", "text_davinci_003") in validated

    keys = ["system", "n", "decisive", "agreement", "win_judge", "win_reference"]
    rows = run_json(
        capsys,
        ["judge-agreement", "--judge", f"fitted:{out}", "--annotations", *map(str, notes)]
        + ["--reference", str(reference), "--format", "json", "--bootstrap", "20"],
    )
    assert sorted(r["system"] for r in rows) == sorted(MODELS) and all(list(r)[:6] == keys for r in rows)
    for model, row in zip(MODELS, sorted(rows, key=lambda r: r["system"]), strict=True):
        prefs = [a["preference"] for a in json.loads((tmp_path / f"{model}.json").read_text())]
        valid = [p for p in prefs if p in (1, 2, 1.5)]
        assert row["n"] == len(valid) and row["decisive"] == sum(p in (1, 2) for p in valid)
        assert row["win_reference"] == pytest.approx(sum(p == 2 for p in valid) / len(valid))
        assert 0.0 <= row["agreement"] <= 1.0

    rows = run_json(
        capsys, ["judge-agreement", "--release", str(release), "--format", "json", "--bootstrap", "20"]
    )
    assert sorted(r["system"] for r in rows) == sorted(SYSTEMS) and all(r["n"] == 60 for r in rows)

    rows = run_json(
        capsys, ["judge-agreement", *args, "--out-of-fit", "--format", "json", "--bootstrap", "20"]
    )
    assert sorted(r["system"] for r in rows) == sorted([*SYSTEMS, *MODELS])


def test_a_verdict_file_the_shipped_judge_was_fitted_to_is_flagged(
    shared_data: Path, capsys: pytest.CaptureFixture
) -> None:
    note = shared_data / "alpaca_eval" / "annotations" / "text_davinci_001.json"
    capsys.readouterr()
    code = main(["judge-agreement", "--annotations", str(note), "--format", "json", "--bootstrap", "20"])
    assert code == 0
    err = capsys.readouterr().err
    assert "agreement on them is in fit" in err and "--out-of-fit" in err


def test_head_to_head_judges_both_orders_into_its_own_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from icalign_nb.analysis.head_to_head import head_to_head
    from icalign_nb.judging.verdicts import load_judgments_file

    answers = {
        "a": [
            "Boil water, add the egg, wait six minutes, then cool it in cold water.",
            "Six minutes in boiling water.",
        ],
        "b": ["egg egg egg egg egg egg egg egg", ""],
    }
    for name, texts in answers.items():
        run = tmp_path / name
        run.mkdir()
        rows = [
            {"query_id": "q1", "sample": s, "query": "How do I soft-boil an egg?", "response": t}
            for s, t in enumerate(texts)
        ]
        (run / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(
        ["judge", "--run", str(tmp_path / "a"), "--baseline", f"run:{tmp_path / 'b'}", "--no-progress"]
    )
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "the two orders agree on 2/2" in out  # the fitted judge has no position bias
    target = tmp_path / "a" / "judgments.vs-b.jsonl"
    assert target.exists() and not (tmp_path / "a" / "judgments.jsonl").exists()
    verdicts = load_judgments_file(target)
    assert sorted(verdicts["order"]) == ["baseline_first", "baseline_first", "system_first", "system_first"]
    result = head_to_head(verdicts)
    assert (result["system_a"], result["system_b"], result["n"]) == ("a", "b", 2)
    assert result["win"] == 1.0 and result["net"] == 1.0
