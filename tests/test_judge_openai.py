"""The OpenAI-compatible judge over real HTTP (the `openai` client against a local server)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scripted_server import ScriptedServer

from icalign_nb.judging.run import JudgeRun, run_judge
from icalign_nb.judging.spec import parse_judge_spec

ROOT = Path(__file__).resolve().parents[1]
N_QUERIES = 6
N_SAMPLES = 2


def tags(body: dict) -> tuple[str, str]:
    """The ANSWER-q-s / BASE-q tags of the two answers, in the order shown."""
    found = re.findall(r"(ANSWER-\d+-\d+|BASE-\d+)", body["messages"][1]["content"])
    return found[0], found[1]


def completion(body: dict) -> dict:
    """Scores that encode the item: system = query number % 10, baseline = 5; position-sensitive for q=3."""
    first, second = tags(body)
    sys_tag = first if first.startswith("ANSWER") else second
    q = int(sys_tag.split("-")[1])
    s_sys, s_base = q % 10, 5
    if q == 3 and first.startswith("BASE"):  # this item's judge prefers whatever comes second
        s_sys, s_base = 6, 4
    s1, s2 = (s_sys, s_base) if first.startswith("ANSWER") else (s_base, s_sys)
    text = f"{s1} {s2}\nexplanation for {sys_tag}"
    if q == 5:
        text = "I cannot compare these."
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@pytest.fixture()
def server() -> Iterator[ScriptedServer]:
    """Fails with 429, then 500, then answers out of order."""
    with ScriptedServer(completion, failures=(429, 500), delay=0.05) as srv:
        yield srv


def make_run(root: Path) -> tuple[Path, Path]:
    """A run directory with generations.jsonl and a baseline file, written the way issue 3 does."""
    run = root / "run"
    run.mkdir()
    rows = []
    for q in range(N_QUERIES):
        for s in range(N_SAMPLES):
            rows.append(
                {
                    "query_id": f"q{q}",
                    "sample": s,
                    "query": f"Question number {q}?",
                    "preset": "paper",
                    "demo_ids": ["d1", "d2"][: s + 1],
                    "response": f"ANSWER-{q}-{s} text",
                    "n_prompt_tokens": 10,
                    "n_generated_tokens": 3,
                    "stopped_by": "stop",
                    "seconds": 0.1,
                }
            )
    (run / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "config.json").write_text(json.dumps({"model": "tiny-random", "preset": "paper"}))
    baseline = root / "baseline.jsonl"
    baseline.write_text(
        "".join(
            json.dumps({"prompt": f"Question number {q}?", "response": f"BASE-{q}"}) + "\n"
            for q in range(N_QUERIES)
        )
    )
    return run, baseline


def judge_run(run: Path, baseline: Path, url: str, swap: bool = False) -> object:
    spec = parse_judge_spec("openai:test-judge", base_url=url)
    return run_judge(JudgeRun(run, str(baseline), spec, swap=swap, concurrency=4, max_retries=3, timeout=10))


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test judges into a cache of its own."""
    monkeypatch.setenv("ICALIGN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_judging_over_http_retries_keeps_order_and_caches(
    tmp_path: Path, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    run, baseline = make_run(tmp_path)
    summary = judge_run(run, baseline, server.url)
    total = N_QUERIES * N_SAMPLES
    assert summary.requested == total and summary.cached == 0
    assert len(server.requests) == total + 2  # the 429 and the 500 were retried
    assert all(a == "Bearer sk-test-secret" for a in server.auth)
    assert server.requests[-1]["temperature"] == 0.2 and server.requests[-1]["max_tokens"] == 500

    rows = [json.loads(line) for line in (run / "judgments.jsonl").read_text().splitlines()]
    assert [(r["query_id"], r["sample"]) for r in rows] == [
        (f"q{q}", s) for q in range(N_QUERIES) for s in range(N_SAMPLES)
    ]
    for r in rows:
        q = int(r["query_id"][1:])
        if q == 5:
            assert r["verdict"] == "invalid" and r["raw"] == "I cannot compare these."
            continue
        assert (r["score_system"], r["score_baseline"]) == (q % 10, 5)
        assert r["verdict"] == ("win" if q > 5 else "lose" if q < 5 else "draw")
        assert f"ANSWER-{q}-{r['sample']}" in r["raw"]
        assert r["judge"].startswith("test-judge/default") and "proxy" in r["judge"]
    # The key is read from the environment and written nowhere.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert "sk-test-secret" not in path.read_text(errors="ignore"), path

    before = len(server.requests)
    again = judge_run(run, baseline, server.url)
    assert len(server.requests) == before  # a re-run with the cache makes 0 requests
    assert again.requested == 0 and again.cached == total
    assert [json.loads(line) for line in (run / "judgments.jsonl").read_text().splitlines()] == rows


def test_swap_judges_both_orders_and_reports_agreement(
    tmp_path: Path, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from icalign_nb.analysis.winrates import combine_orders, swap_agreement
    from icalign_nb.judging.verdicts import load_verdicts

    monkeypatch.setenv("OPENAI_API_KEY", "k")
    server.failures = []
    run, baseline = make_run(tmp_path)
    summary = judge_run(run, baseline, server.url, swap=True)
    assert summary.total == 2 * N_QUERIES * N_SAMPLES
    seen = [tags(r) for r in server.requests]
    assert ("BASE-0", "ANSWER-0-0") in seen and ("ANSWER-0-0", "BASE-0") in seen
    # q3 flips with position; q5 is invalid in both orders; the rest agree.
    agreement = swap_agreement(load_verdicts(run)).row(0, named=True)
    assert agreement["pairs"] == (N_QUERIES - 1) * N_SAMPLES
    assert agreement["agree"] == (N_QUERIES - 2) * N_SAMPLES
    combined = combine_orders(load_verdicts(run))
    verdicts = dict(
        zip(combined["query_id"] + "/" + combined["sample"].cast(str), combined["verdict"], strict=True)
    )
    assert verdicts["q3/0"] == "draw"  # the orders disagree: a draw
    assert verdicts["q4/1"] == "lose" and verdicts["q5/0"] == "invalid" and verdicts["q0/0"] == "lose"


def test_missing_key_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from icalign_nb.cli import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    run, baseline = make_run(tmp_path)
    code = main(
        [
            "judge",
            "--run",
            str(run),
            "--baseline",
            str(baseline),
            "--judge",
            "paper",
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    assert code == 1


def test_a_killed_judging_run_resumes_losing_nothing(tmp_path: Path) -> None:
    def slowly(body: dict) -> dict:
        time.sleep(0.15)
        return completion(body)

    with ScriptedServer(slowly) as srv:
        run, baseline = make_run(tmp_path)
        cache = tmp_path / "cache"
        cmd = [
            sys.executable,
            "-m",
            "icalign_nb.cli",
            "judge",
            "--run",
            str(run),
            "--baseline",
            str(baseline),
            "--judge",
            "openai:test-judge",
            "--base-url",
            srv.url,
            "--concurrency",
            "2",
            "--cache-dir",
            str(cache),
        ]
        env = {**os.environ, "OPENAI_API_KEY": "k"}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        journal = None
        deadline = time.time() + 60
        while time.time() < deadline:
            journals = list((cache / "judgments").glob("*.jsonl")) if (cache / "judgments").exists() else []
            if journals and len(journals[0].read_text().splitlines()) >= 4:
                journal = journals[0]
                break
            time.sleep(0.02)
        assert journal is not None, "the judging run never got going"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (run / "judgments.jsonl").exists()
        done_before = {
            json.loads(line)["raw"].split()[-1] for line in journal.read_text().splitlines() if line.strip()
        }
        asked_before = len(srv.requests)
        assert 4 <= len(done_before) < N_QUERIES * N_SAMPLES

        rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        asked_after = [tags(r)[0] for r in srv.requests[asked_before:]]
        assert not set(asked_after) & done_before  # nothing finished is asked again
        rows = [json.loads(line) for line in (run / "judgments.jsonl").read_text().splitlines()]
        keys = [(r["query_id"], r["sample"], r["order"]) for r in rows]
        assert len(keys) == len(set(keys)) == N_QUERIES * N_SAMPLES  # each item exactly once
        journal_keys = [json.loads(line)["key"] for line in journal.read_text().splitlines()]
        assert len(journal_keys) == len(set(journal_keys))
