"""The reference-guided embedding judge, and its agreement with the release's GPT-4 verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icalign_nb.analysis.agreement import judge_agreement
from icalign_nb.analysis.winrates import swap_agreement
from icalign_nb.errors import UserError
from icalign_nb.judging.backends.embedding import EmbeddingJudge
from icalign_nb.judging.cache import JudgmentCache
from icalign_nb.judging.comparisons import Comparison, release_comparisons
from icalign_nb.judging.run import JudgeRun, judgment_rows_frame, run_judge
from icalign_nb.judging.spec import parse_judge_spec
from icalign_nb.judging.verdicts import load_release_verdicts, load_verdicts

REFERENCE = "Paris is the capital of France. It sits on the Seine and has about two million people."
CLOSE = "The capital of France is Paris, a city of roughly two million on the river Seine."
FAR = "Bananas are rich in potassium and are best stored at room temperature."


def test_closer_answer_wins_margin_draws_and_cache_is_reused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ICALIGN_CACHE", str(tmp_path))
    spec = parse_judge_spec("embedding")
    judge = EmbeddingJudge(spec)
    items = [
        Comparison("q", 0, "system_first", "Capital of France?", CLOSE, FAR, REFERENCE),
        Comparison("q", 1, "system_first", "Capital of France?", FAR, CLOSE, REFERENCE),
        Comparison("q", 2, "system_first", "Capital of France?", CLOSE, CLOSE + " ", REFERENCE),
    ]
    replies: dict[int, object] = {}
    judge.judge(items, lambda i, r: replies.__setitem__(i, r))
    (a, b), (c, d), (e, f) = (replies[i].scores for i in range(3))
    assert a > b and c < d and abs(e - f) <= spec.margin
    assert replies[0].raw.splitlines()[0] == f"{a:.4f} {b:.4f}"

    encoded: list[int] = []
    fresh = EmbeddingJudge(spec)
    original = fresh.store().encoder.encode
    fresh.store().encoder.encode = lambda texts, **kw: encoded.append(len(texts)) or original(texts, **kw)
    fresh.judge(items, lambda i, r: None)
    assert encoded == []  # every text came from the on-disk embedding cache


def test_run_needs_a_reference_and_labels_the_proxy(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    row = {"query_id": "q0", "sample": 0, "query": "Capital of France?", "response": CLOSE, "demo_ids": []}
    (run / "generations.jsonl").write_text(json.dumps(row) + "\n")
    base = tmp_path / "base.jsonl"
    base.write_text(json.dumps({"prompt": "Capital of France?", "response": FAR}) + "\n")
    ref = tmp_path / "ref.jsonl"
    ref.write_text(json.dumps({"prompt": "Capital of France?", "response": REFERENCE}) + "\n")
    spec = parse_judge_spec("embedding")
    with pytest.raises(UserError, match="reference answers"):
        run_judge(JudgeRun(run, str(base), spec))
    summary = run_judge(JudgeRun(run, str(base), spec, reference=str(ref), swap=True))
    assert summary.verdicts["win"] == 2
    assert swap_agreement(load_verdicts(run)).select("pairs", "agree").row(0) == (1, 1)
    out = [json.loads(line) for line in (run / "judgments.jsonl").read_text().splitlines()]
    assert out[0]["judge"] == "embedding:minilm@256 margin=0.005 (proxy judge)"


def test_unknown_baseline_answer_names_file_and_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "generations.jsonl").write_text(
        json.dumps({"query_id": "q0", "sample": 0, "query": "A?", "response": "x"})
        + "\n"
        + json.dumps({"query_id": "q1", "sample": 0, "query": "B?"})
        + "\n"
    )
    base = tmp_path / "base.jsonl"
    base.write_text(json.dumps({"prompt": "A?", "response": "y"}) + "\n")
    with pytest.raises(UserError, match=r"generations.jsonl:2: field 'response' must be a str"):
        run_judge(JudgeRun(run, str(base), parse_judge_spec("embedding"), reference=str(base)))


# GPT-4's verdicts on the release vs the embedding judge's (reference: ChatGPT's answers;
# baseline: davinci-003; first 256 MiniLM tokens; no margin): (win rate, agreement on decisive).
MEASURED = {
    "llama2base-13B_zeroshot": (0.081, 0.85),
    "llama2-13B_icl-oasstgpt": (0.596, 0.65),
    "llama2chat-13B": (0.561, 0.62),
}


@pytest.mark.slow
def test_embedding_judge_agreement_with_gpt4_on_the_release(
    shared_data: Path, capsys: pytest.CaptureFixture
) -> None:
    release = shared_data / "paper_release"
    spec = parse_judge_spec("embedding", margin=0.0)
    judge = EmbeddingJudge(spec)  # the user cache: embeddings are computed once, then reused
    cache = JudgmentCache(spec.key)
    for system, (win, agreement) in MEASURED.items():
        file = release / f"{system}_vs_davinci003_autoeval.jsonl"
        comparisons = release_comparisons(file, "chatgpt", release)
        assert len(comparisons) == 1500
        judged = judgment_rows_frame(comparisons, judge, cache, spec, system, "davinci003")
        result = judge_agreement(judged, load_release_verdicts(file))
        print(system, result)
        assert abs(result["win_judge"] - win) <= 0.01, (system, result)
        assert abs(result["agreement"] - agreement) <= 0.01, (system, result)
        assert result["ci_low"] < result["agreement"] < result["ci_high"]

    # The command gives the same figures (every reply now comes from the judgment cache).
    from icalign_nb.cli import main

    capsys.readouterr()
    code = main(
        [
            "judge-agreement",
            "--release",
            str(release),
            "--systems",
            "llama2base-13B_zeroshot",
            "--margin",
            "0",
            "--format",
            "json",
            "--bootstrap",
            "200",
        ]
    )
    assert code == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["system"] == "llama2base-13B_zeroshot" and row["n"] == 1500
    assert abs(row["agreement"] - MEASURED["llama2base-13B_zeroshot"][1]) <= 0.01


def test_the_runs_eval_set_gives_the_references_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from icalign_nb.cli import main
    from icalign_nb.data.loaders import load_eval

    queries = load_eval("starter").head(2)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(
        json.dumps({"identity": {"retrieval": {"eval": "starter"}, "model": "tiny-random"}})
    )
    rows = [
        {"query_id": qid, "sample": 0, "query": prompt, "response": ref, "demo_ids": []}
        for qid, prompt, ref in zip(queries["id"], queries["prompt"], queries["reference"], strict=True)
    ]
    (run / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(
        [
            "judge",
            "--run",
            str(run),
            "--baseline",
            "starter",
            "--judge",
            "embedding",
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    out = [json.loads(line) for line in (run / "judgments.jsonl").read_text().splitlines()]
    assert [r["verdict"] for r in out] == ["win", "win"]  # the answers *are* the references
    assert out[0]["score_system"] == pytest.approx(1.0, abs=1e-4)
