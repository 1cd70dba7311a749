"""Fault injection: concurrent writers, changed inputs, failing and misbehaving endpoints, special and
unwritable outputs, bad bytes, torn or misshapen files, a full disk, hangs and killed conversions.

Every case asserts the exit code, the one-line message, and that no row was lost or duplicated.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import share_builds
from scripted_server import ScriptedServer

from icalign_nb.cli import main
from icalign_nb.files import exclusive

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "tiny-random", "--max-new-tokens", "4", "--samples", "2", "--limit", "3", "--no-progress"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Judgments and embeddings of these tests go to a cache of their own (models and kernels stay shared)."""
    share_builds(tmp_path / "cache")
    monkeypatch.setenv("ICALIGN_CACHE", str(tmp_path / "cache"))


def one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("icalign: error:") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def generate(run: Path, *extra: str) -> int:
    return main(["generate", "--run", str(run), "--preset", "zero-shot", *TINY, *extra])


def generations_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> Path:
    run = tmp_path / "run"
    assert generate(run) == 0
    capsys.readouterr()
    return run


def answers_file(tmp_path: Path, run: Path, name: str = "base.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(
        "".join(
            json.dumps({"prompt": r["query"], "response": "No idea."}) + "\n"
            for r in rows(run / "generations.jsonl")
        )
    )
    return path


# ---------------------------------------------------------------- concurrent writers


def test_a_held_run_directory_refuses_a_second_writer_and_is_taken_over_after_a_kill(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = generations_run(tmp_path, capsys)
    before = (run / "generations.jsonl").read_bytes()
    with exclusive(run, "a test"):
        assert generate(run) == 1
        assert f"pid {os.getpid()}" in one_line_error(capsys)
        base = answers_file(tmp_path, run)
        assert main(["judge", "--run", str(run), "--baseline", str(base), "--reference", str(base)]) == 1
        assert "is in use" in one_line_error(capsys)
    assert (run / "generations.jsonl").read_bytes() == before
    # an owner that dies (SIGKILL: no clean-up at all) frees the lock for the next writer
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from pathlib import Path; from icalign_nb.files import exclusive\n"
            f"with exclusive(Path({str(run)!r}), 'x'):\n    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    assert generate(run) == 1 and "is in use" in one_line_error(capsys)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert generate(run) == 0
    keys = [(r["query_id"], r["sample"]) for r in rows(run / "generations.jsonl")]
    assert len(keys) == len(set(keys)) == 6


def test_readers_count_a_duplicated_item_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from icalign_nb.generation.rundir import read_generations
    from icalign_nb.judging.verdicts import load_verdicts

    run = generations_run(tmp_path, capsys)
    lines = (run / "generations.jsonl").read_text().splitlines(keepends=True)
    (run / "generations.jsonl").write_text("".join(lines + lines[:2]))
    assert len(read_generations(run)) == 6
    base = answers_file(tmp_path, run)
    assert main(["judge", "--run", str(run), "--baseline", str(base), "--reference", str(base)]) == 0
    judged = (run / "judgments.jsonl").read_text().splitlines(keepends=True)
    assert len(judged) == 6
    (run / "judgments.jsonl").write_text("".join(judged + judged))
    assert load_verdicts(run).height == 6


# ---------------------------------------------------------------- changed inputs


def test_a_resume_over_a_changed_pool_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"prompt": f"Q{i}?", "response": f"A{i}."}) + "\n" for i in range(30)))
    run = tmp_path / "run"
    args = ["generate", "--run", str(run), "--pool", str(pool), "--preset", "random", *TINY]
    assert main(args + ["--limit", "2"]) == 0  # a first, shorter pass... the limit is part of the run
    capsys.readouterr()
    assert main(args) == 1  # a different limit: a different configuration
    assert "limit" in one_line_error(capsys)
    pool.write_text(pool.read_text().replace("A3.", "A three."))
    assert main(args + ["--limit", "2"]) == 1
    err = one_line_error(capsys)
    assert f"pool '{pool}'" in err and "changed" in err


# ---------------------------------------------------------------- endpoints


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def judge_cmd(run: Path, base: Path, url: str, *extra: str) -> list[str]:
    return [
        "judge",
        "--run",
        str(run),
        "--baseline",
        str(base),
        "--judge",
        "openai:test",
        "--base-url",
        url,
        "--no-progress",
        *extra,
    ]


def test_an_unreachable_judge_fails_fast_and_keeps_the_judgments(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    run = generations_run(tmp_path, capsys)
    base = answers_file(tmp_path, run)
    (run / "judgments.jsonl").write_text('{"kept": "the earlier verdicts"}\n')
    url = f"http://127.0.0.1:{closed_port()}/v1"
    start = time.monotonic()
    assert main(judge_cmd(run, base, url, "--max-retries", "1", "--timeout", "2")) == 1
    assert time.monotonic() - start < 20
    err = capsys.readouterr().err
    assert f"judge endpoint {url} unreachable" in err.splitlines()[-1] and "Traceback" not in err
    assert (run / "judgments.jsonl").read_text() == '{"kept": "the earlier verdicts"}\n'


def test_a_persistent_400_is_an_error_with_the_servers_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    run = generations_run(tmp_path, capsys)
    base = answers_file(tmp_path, run)
    with ScriptedServer(lambda body: {}, failures=(400,) * 20) as srv:
        assert main(judge_cmd(run, base, srv.url)) == 1
    err = one_line_error(capsys)
    assert "refused the request (400): scripted 400" in err
    assert not (run / "judgments.jsonl").exists()


@pytest.mark.parametrize(
    "body",
    [b"{not json", json.dumps({"choices": []}).encode(), b"<html><body>Bad gateway</body></html>"],
    ids=["malformed-json", "no-choices", "html-page"],
)
def test_a_reply_that_is_not_a_completion_is_an_invalid_verdict_with_its_text(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, body: bytes
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    run = generations_run(tmp_path, capsys)
    base = answers_file(tmp_path, run)
    with ScriptedServer(lambda request: body) as srv:
        assert main(judge_cmd(run, base, srv.url, "--max-retries", "1")) == 0
        assert len(srv.requests) == 6 * 2  # each asked again once, then kept as invalid
    out = rows(run / "judgments.jsonl")
    assert len(out) == 6 and {r["verdict"] for r in out} == {"invalid"}
    assert all(body.decode()[:20] in r["raw"] for r in out)
    assert main(["winrate", str(run)]) == 1  # nothing valid: no win rate
    assert "no valid comparison" in one_line_error(capsys)


def test_a_hanging_server_is_bounded_by_the_timeout_and_retries_are_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    run = generations_run(tmp_path, capsys)
    base = answers_file(tmp_path, run)

    def hang(body: dict) -> dict:
        time.sleep(30)
        return {}

    with ScriptedServer(hang) as srv:
        start = time.monotonic()
        assert (
            main(judge_cmd(run, base, srv.url, "--max-retries", "2", "--timeout", "1", "--concurrency", "1"))
            == 1
        )
        assert time.monotonic() - start < 15
    err = capsys.readouterr().err.splitlines()
    assert sum("retrying" in line for line in err) == 2 and "unreachable" in err[-1]


def test_server_errors_are_shown_with_keys_masked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from icalign_nb.endpoints import redact

    assert (
        redact("Incorrect API key provided: sk-proj-abcdef123456.") == "Incorrect API key provided: sk-proj…."
    )
    run = tmp_path / "run"
    with ScriptedServer(lambda body: {}, failures=(401,)) as srv:
        code = main(
            [
                "generate",
                "--run",
                str(run),
                "--backend",
                "openai",
                "--base-url",
                srv.url,
                "--api-key",
                "sk-live-secretsecret",
                "--preset",
                "zero-shot",
                *TINY,
            ]
        )
    assert code == 1 and "sk-live-secretsecret" not in one_line_error(capsys)


# ---------------------------------------------------------------- outputs


def test_outputs_write_through_symlinks_and_into_devices_never_replacing_them(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    assert main(["retrieve", "--preset", "zero-shot", "--limit", "2", "--out", str(link)]) == 0
    assert link.is_symlink() and len(rows(target)) == 2
    assert main(["retrieve", "--preset", "zero-shot", "--limit", "2", "--out", "/dev/null"]) == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    fresh = tmp_path / "fresh.jsonl"
    assert main(["retrieve", "--preset", "zero-shot", "--limit", "1", "--out", str(fresh)]) == 0
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("where", ["folder", "proc"])
def test_an_unwritable_output_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture, where: str
) -> None:
    out = tmp_path if where == "folder" else Path("/proc/icalign-test.jsonl")
    assert main(["retrieve", "--preset", "zero-shot", "--limit", "1", "--out", str(out)]) == 1
    err = one_line_error(capsys)
    assert ("is a folder" in err) if where == "folder" else ("cannot write there" in err)


def test_a_full_disk_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    done = subprocess.run(
        [sys.executable, "-m", "icalign_nb.cli", "retrieve", "--preset", "zero-shot", "--out", str(out)],
        preexec_fn=small_files,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [f"icalign: error: {out}: File too large"]
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl.*"))


# ---------------------------------------------------------------- bad input files


@pytest.mark.parametrize("kind", ["pool-jsonl", "eval-json", "urial", "judgments"])
def test_bytes_that_are_not_utf8_name_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, kind: str
) -> None:
    good = json.dumps({"prompt": "Why?", "response": "Because."}).encode()
    bad = b'{"prompt": "caf\xe9?", "response": "x"}'
    if kind == "pool-jsonl":
        path = tmp_path / "pool.jsonl"
        path.write_bytes(good + b"\n" + bad + b"\n")
        args = ["retrieve", "--pool", str(path), "--preset", "random", "--max-k", "1", "--limit", "1"]
    elif kind == "eval-json":
        path = tmp_path / "eval.json"
        path.write_bytes(b"[" + good + b",\n" + bad + b"]")
        args = ["retrieve", "--eval", str(path), "--preset", "zero-shot"]
    elif kind == "urial":
        path = tmp_path / "urial.txt"
        path.write_bytes(b"# Query:\n```\nhi\n```\n# Answer:\n```\n\xff\n```\n")
        args = ["retrieve", "--preset", "urial", "--urial-prompt", str(path), "--limit", "1"]
    else:
        path = tmp_path / "judgments.jsonl"
        judged = {"query_id": "q", "sample": 0, "order": "system_first", "verdict": "win"}
        path.write_bytes(
            json.dumps({**judged, "score_system": 8, "score_baseline": 7}).encode() + b"\n\xff\n"
        )
        args = ["winrate", str(path)]
    out = ["--out", str(tmp_path / "out.jsonl")] if args[0] == "retrieve" else []
    assert main(args + out) == 1
    line = 7 if kind == "urial" else 2
    assert f"{path}:{line}: not UTF-8 text" in one_line_error(capsys)


def test_misshapen_files_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "x.jsonl"
    folder.mkdir()
    out = ["--out", str(tmp_path / "o.jsonl")]
    assert main(["retrieve", "--eval", str(folder), "--preset", "zero-shot", *out]) == 1
    assert "is a folder" in one_line_error(capsys)
    parquet = tmp_path / "pool.parquet"
    parquet.write_bytes(b"PAR1 this is not parquet")
    assert main(["retrieve", "--eval", str(parquet), "--preset", "zero-shot", *out]) == 1
    assert "not a readable Parquet file" in one_line_error(capsys)
    broken = tmp_path / "broken"
    (broken / "generations.jsonl").mkdir(parents=True)
    assert main(["judge", "--run", str(broken), "--baseline", "starter", "--reference", "starter"]) == 1
    assert "is a folder" in one_line_error(capsys)
    journal = tmp_path / "cache" / "judgments"
    journal.mkdir(parents=True)
    from icalign_nb.judging.cache import JudgmentCache
    from icalign_nb.judging.spec import parse_judge_spec

    key = parse_judge_spec("fitted").key  # the default judge
    (journal / JudgmentCache(key).path.name).write_text('{"key": "k", "raw": "8 7"}\n{"keys": 1}\n')
    run = generations_run(tmp_path, capsys)
    base = answers_file(tmp_path, run)
    assert main(["judge", "--run", str(run), "--baseline", str(base), "--reference", str(base)]) == 1
    assert ".jsonl:2: not a cached judgment" in one_line_error(capsys)


def test_fields_apply_to_eval_files_too(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps({"question": "Why is the sky blue?"}) + "\n")
    out = tmp_path / "o.jsonl"
    assert (
        main(
            [
                "retrieve",
                "--eval",
                str(path),
                "--fields",
                "prompt=question",
                "--preset",
                "zero-shot",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert rows(out)[0]["query"] == "Why is the sky blue?"


# ---------------------------------------------------------------- leftovers


def test_a_killed_model_conversion_leaves_nothing_for_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from icalign_nb.cache import cache_path
    from icalign_nb.models.builds import cached_build
    from icalign_nb.models.registry import model_spec

    monkeypatch.setenv("ICALIGN_CACHE", str(tmp_path / "fresh"))
    target = cache_path("models", "tiny-random", model_spec("tiny-random").source)
    stale = target.parent / f".{target.name}.build-killed"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"\0" * 1000)

    def build(out: Path) -> None:
        (out / "config.json").write_text("{}")

    assert cached_build("tiny-random", build) == target
    assert (target / "config.json").exists() and not stale.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == [f".{target.name}.lock", target.name]


# ---------------------------------------------------------------- issue: nothing silently wrong
#
# A verdict only for the answer judged, outputs that never eat inputs, systems never merged, replies that
# are not answers never saved, unfinished runs never reported, numbers checked at the door, pins checked
# on every read, damaged caches named and built again, journals safe for concurrent writers.


@pytest.fixture(scope="module")
def tiny_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny run (3 starter queries x 2 samples), generated once for the tests that copy it."""
    root = tmp_path_factory.mktemp("tiny")
    with pytest.MonkeyPatch.context() as patch:
        share_builds(root / "cache")
        patch.setenv("ICALIGN_CACHE", str(root / "cache"))
        assert generate(root / "run") == 0
    return root / "run"


@pytest.fixture()
def tiny_run(tiny_template: Path, tmp_path: Path) -> Path:
    """A copy of the finished tiny run, the test's own."""
    run = tmp_path / "run"
    shutil.copytree(tiny_template, run)
    return run


def chat_reply(content: str = "8 7") -> Callable[[dict], dict]:
    """A scripted chat judge's reply: the two scores in its first line."""
    return lambda body: {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}


def hand_run(root: Path, name: str, answers: list[str], prompts: list[str] | None = None) -> Path:
    """A run directory holding only answers (one sample per query), as `judge` takes them from elsewhere."""
    run = root / name
    run.mkdir(parents=True)
    prompts = prompts or [f"Question number {i}?" for i in range(len(answers))]
    lines = [
        {"query_id": f"q{i}", "sample": 0, "query": p, "response": a}
        for i, (p, a) in enumerate(zip(prompts, answers, strict=True))
    ]
    (run / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run


def judged_run(root: Path, name: str, verdicts: list[str], baseline: str = "base", judge: str = "j") -> Path:
    """A run directory holding only verdicts (system first), as `winrate` and `compare` take them."""
    run = root / name
    run.mkdir(parents=True)
    scores = {"win": (8, 5), "lose": (5, 8), "draw": (5, 5)}
    lines = [
        {
            "query_id": f"q{i}",
            "sample": 0,
            "order": "system_first",
            "score_system": scores[v][0],
            "score_baseline": scores[v][1],
            "verdict": v,
            "judge": judge,
            "baseline": baseline,
        }
        for i, v in enumerate(verdicts)
    ]
    (run / "judgments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run


def release_run(root: Path, data: Path, system: str, n: int = 3) -> Path:
    """A run directory holding the release's own answers of `system` to the first `n` LIMA prompts."""
    lines = (data / "paper_release" / f"{system}_outputs_temp0.7.jsonl").read_text().splitlines()[:n]
    run = root / "release-answers"
    run.mkdir()
    rows = [
        {"query_id": f"lima-{i:03d}", "sample": s, "query": obj["prompt"], "response": answer}
        for i, obj in enumerate(map(json.loads, lines))
        for s, answer in enumerate(obj["response_list"])
    ]
    (run / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_the_recorded_judge_gives_verdicts_only_for_the_answers_it_read(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture
) -> None:
    from icalign_nb.judging.verdicts import load_release_verdicts, load_verdicts

    system = "llama2-13B_icl-oasstgpt"
    recorded = shared_data / "paper_release" / f"{system}_vs_davinci003_autoeval.jsonl"
    prompts = [
        json.loads(line)["prompt"]
        for line in (shared_data / "paper_release" / "davinci003_results.jsonl").read_text().splitlines()[:3]
    ]
    other = hand_run(tmp_path, "other-answers", ["the the the the"] * 3, prompts)
    judge = ["--judge", f"recorded:{recorded}", "--data-dir", str(shared_data), "--no-progress"]
    assert main(["judge", "--run", str(other), "--baseline", "davinci003", *judge]) == 1
    err = one_line_error(capsys)
    assert "3 of 3 comparison(s) were never judged by it" in err and "is not one of the release's" in err
    assert not (other / "judgments.jsonl").exists()
    assert not list((tmp_path / "cache").glob("judgments/*"))  # no placeholder was cached
    # the release's own answers get the release's own verdicts; another order or baseline gets none
    own = release_run(tmp_path, shared_data, system)
    assert main(["judge", "--run", str(own), "--baseline", "davinci003", *judge]) == 0
    first3 = load_release_verdicts(recorded).filter(pl.col("query_id") < "lima-003")
    assert load_verdicts(own)["verdict"].to_list() == first3["verdict"].to_list()
    capsys.readouterr()
    assert main(["judge", "--run", str(own), "--baseline", "davinci003", "--swap", *judge]) == 1
    assert "system-first order only" in one_line_error(capsys)
    assert main(["judge", "--run", str(own), "--baseline", "chatgpt", *judge]) == 1
    assert "baseline answer is not the release's davinci003 answer" in one_line_error(capsys)
    vs_chatgpt = ["--judge", f"recorded:{str(recorded).replace('davinci003', 'chatgpt')}", *judge[2:]]
    assert main(["judge", "--run", str(own), "--baseline", "chatgpt", *vs_chatgpt]) == 1  # sample 0 only
    assert "12 of 15" in (err := one_line_error(capsys)) and "recorded no reply for that answer" in err


def test_an_output_never_replaces_an_input_or_another_commands_file(
    tmp_path: Path, tiny_run: Path, shared_data: Path, capsys: pytest.CaptureFixture
) -> None:
    answers = (tiny_run / "generations.jsonl").read_bytes()
    base = answers_file(tmp_path, tiny_run)
    judge = ["--judge", "openai:test", "--base-url", "http://127.0.0.1:9/v1", "--baseline", str(base)]
    for args in (
        ["export", "--run", str(tiny_run), "--format", "paper", "--out", str(tiny_run / "generations.jsonl")],
        ["judge", "--run", str(tiny_run), *judge, "--out", str(tiny_run / "generations.jsonl")],
        ["judge", "--run", str(tiny_run), *judge, "--out", str(base)],
    ):
        assert main(args) == 1
        assert "is an input of this command" in one_line_error(capsys)
    assert (tiny_run / "generations.jsonl").read_bytes() == answers
    other = hand_run(tmp_path, "other", ["An answer."])
    assert main(["judge", "--run", str(tiny_run), *judge, "--out", str(other / "judgments.jsonl")]) == 1
    assert "inside the run directory" in one_line_error(capsys)
    assert not (other / "judgments.jsonl").exists()
    queries = tmp_path / "eval.jsonl"
    queries.write_text(json.dumps({"prompt": "Why is the sky blue?"}) + "\n")
    before = queries.read_bytes()
    assert main(["retrieve", "--preset", "zero-shot", "--eval", str(queries), "--out", str(queries)]) == 1
    assert "is an input of this command" in one_line_error(capsys) and queries.read_bytes() == before
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "a.jsonl").write_text(json.dumps({"prompt": "Q?", "response": "A."}) + "\n")
    args = ["retrieve", "--preset", "random", "--max-k", "1", "--pool", str(pool), "--limit", "1"]
    assert main([*args, "--out", str(pool / "retrievals.jsonl")]) == 1  # into the pool it reads
    assert "is an input of this command" in one_line_error(capsys)
    # a built-in name is the file it reads: a data directory's copy is an input too
    data = tmp_path / "data"
    (data / "paper_release").mkdir(parents=True)
    shutil.copy(shared_data / "paper_release" / "davinci003_results.jsonl", data / "paper_release")
    target = data / "paper_release" / "davinci003_results.jsonl"
    args = ["retrieve", "--preset", "zero-shot", "--eval", "lima-test", "--data-dir", str(data)]
    assert main([*args, "--out", str(target)]) == 1
    assert "is an input of this command" in one_line_error(capsys)
    assert target.read_bytes() == (shared_data / "paper_release" / "davinci003_results.jsonl").read_bytes()


def test_judging_into_a_device_still_reports_the_swap_agreement(
    tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture
) -> None:
    base = answers_file(tmp_path, tiny_run)
    with ScriptedServer(chat_reply()) as srv:
        assert main(judge_cmd(tiny_run, base, srv.url, "--swap", "--out", "/dev/null")) == 0
    assert "the two orders agree on 0/6" in capsys.readouterr().out  # 8 7 in both orders: always a draw
    assert not (tiny_run / "judgments.jsonl").exists()


def test_winrate_never_merges_two_runs_and_compare_shows_what_it_pairs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    m1 = judged_run(tmp_path / "m1", "zero-shot", ["win", "lose", "lose", "lose"])
    m2 = judged_run(tmp_path / "m2", "zero-shot", ["win", "win", "win", "lose"])
    assert main(["winrate", str(m1), str(m2), "--format", "json", "--bootstrap", "50"]) == 0
    rows = {r["system"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[os.path.normpath(m1)]["win"] == 0.25 and rows[os.path.normpath(m2)]["win"] == 0.75
    assert {r["n"] for r in rows.values()} == {4}
    # verdicts of a run judged in both orders are never taken for another run's second order
    swapped = [{**r, "order": "baseline_first"} for r in rows_of(m2)]
    (m2 / "judgments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows_of(m2) + swapped))
    assert main(["winrate", str(m1), str(m2), "--format", "json", "--bootstrap", "50"]) == 0
    rows = {r["system"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[os.path.normpath(m1)]["draw"] == 0.0 and rows[os.path.normpath(m2)]["win"] == 0.75
    for twice in ([str(m1), str(m1)], [str(m1), str(m1 / "judgments.jsonl")]):
        assert main(["winrate", *twice]) == 1
        assert "are the same verdicts" in one_line_error(capsys)
    assert main(["compare", str(m2), str(m1), "--bootstrap", "50", "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    assert result["system_a"] != result["system_b"] and result["diff"] == pytest.approx(0.5)
    assert result["baseline"] == "base" and result["judge"] == "j"
    # systems judged against another baseline, or by another judge, are not paired
    for name, kw in (("other-base", {"baseline": "davinci003"}), ("other-judge", {"judge": "k"})):
        other = judged_run(tmp_path, name, ["win", "win", "win", "lose"], **kw)
        assert main(["compare", str(other), str(m1)]) == 1
        assert "needs one baseline and one judge" in one_line_error(capsys)


def rows_of(run: Path) -> list[dict]:
    return rows(run / "judgments.jsonl")


def test_a_server_reply_without_text_is_not_an_answer(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    chat = {"object": "chat.completion", "choices": [{"index": 0, "message": {"content": "Hi"}}]}
    with ScriptedServer(lambda body: chat) as srv:
        code = main(
            [
                "generate",
                "--run",
                str(run),
                "--backend",
                "openai",
                "--base-url",
                srv.url,
                "--max-retries",
                "1",
            ]
            + ["--preset", "zero-shot", *TINY]
        )
        assert 2 <= len(srv.requests) <= 6 * 2  # asked again (at most once each), then stopped
    assert code == 1 and "did not answer with a completion" in one_line_error(capsys)
    assert not (run / "generations.jsonl").exists() or not rows(run / "generations.jsonl")
    # a completion that does not say why it ended is not taken for an end of text
    silent = {"choices": [{"index": 0, "text": " An answer."}]}
    with ScriptedServer(lambda body: silent) as srv:
        args = ["generate", "--run", str(tmp_path / "other"), "--backend", "openai", "--base-url", srv.url]
        assert main([*args, "--preset", "zero-shot", *TINY]) == 0
    assert {r["stopped_by"] for r in rows(tmp_path / "other" / "generations.jsonl")} == {"unknown"}


def test_an_unfinished_or_changed_run_is_neither_judged_nor_reported(
    tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture
) -> None:
    base = answers_file(tmp_path, tiny_run)
    answers = (tiny_run / "generations.jsonl").read_text().splitlines(keepends=True)
    (tiny_run / "generations.jsonl").write_text("".join(answers[:4]))
    with ScriptedServer(chat_reply()) as srv:
        assert main(judge_cmd(tiny_run, base, srv.url)) == 1
        assert "is incomplete (4 of 6 items)" in one_line_error(capsys) and not srv.requests
        (tiny_run / "generations.jsonl").write_text("".join(answers))
        assert main(judge_cmd(tiny_run, base, srv.url)) == 0
    capsys.readouterr()
    assert main(["winrate", str(tiny_run)]) == 0
    (tiny_run / "generations.jsonl").write_text("".join(answers[:4]))  # cut after it was judged
    assert main(["winrate", str(tiny_run)]) == 1
    assert "is incomplete (4 of 6 items)" in one_line_error(capsys)
    changed = [json.loads(a) for a in answers]
    changed[0]["response"] = "Another answer, generated after the verdicts."
    (tiny_run / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in changed))
    assert main(["winrate", str(tiny_run)]) == 1
    assert f"verdicts for other answers than the answers {tiny_run} holds" in one_line_error(capsys)


@pytest.mark.parametrize(
    "args",
    [
        ["judge", "--margin", "-1"],
        ["judge", "--margin", "nan"],
        ["judge", "--temperature", "nan"],
        ["judge", "--max-retries", "-1"],
        ["judge", "--timeout", "0"],
        ["winrate", "--bootstrap", "-5"],
        ["winrate", "--bootstrap-seed", "-1"],
        ["compare", "--bootstrap", "0"],
        ["generate", "--temperature", "nan"],
        ["generate", "--max-retries", "-1"],
    ],
    ids=lambda a: " ".join(a),
)
def test_numbers_are_checked_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str]
) -> None:
    judged = [str(judged_run(tmp_path, n, ["win", "lose"])) for n in ("a", "b")]
    answers = hand_run(tmp_path, "answers", ["An answer."])
    command, option = args[0], args[1:]
    full = {
        "judge": ["judge", "--run", str(answers), "--baseline", "starter", "--judge", "openai:x", *option],
        "winrate": ["winrate", judged[0], *option],
        "compare": ["compare", *judged, *option],
        "generate": ["generate", "--run", str(tmp_path / "new"), "--preset", "zero-shot", *TINY, *option],
    }[command]
    assert main(full) == 1
    assert f"{option[0].removeprefix('--').replace('-', '_')} must be" in one_line_error(capsys)
    assert not (answers / "judgments.jsonl").exists() and not (tmp_path / "new" / "config.json").exists()


def test_length_control_reads_the_recorded_baseline_wherever_it_runs_and_checks_it(
    tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    base = answers_file(work, tiny_run)
    monkeypatch.chdir(work)
    with ScriptedServer(chat_reply()) as srv:
        assert main(judge_cmd(tiny_run, Path(base.name), srv.url)) == 0  # a relative baseline name
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    args = ["winrate", "--length-controlled", str(tiny_run), "--bootstrap", "20", "--format", "json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)[0]["mean_length_diff"] is not None
    # two runs in folders of the same name: each its own lengths
    longer = tmp_path / "m2" / tiny_run.name
    longer.parent.mkdir()
    shutil.copytree(tiny_run, longer)
    answers = [
        {**r, "response": r["response"] + " and more" * 40} for r in rows(longer / "generations.jsonl")
    ]
    (longer / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in answers))
    with ScriptedServer(chat_reply()) as srv:
        assert main(judge_cmd(longer, base, srv.url)) == 0
    capsys.readouterr()
    assert main([*args[:3], str(longer), *args[3:]]) == 0
    diffs = [r["mean_length_diff"] for r in json.loads(capsys.readouterr().out)]
    assert len(diffs) == 2 and diffs[1] == pytest.approx(diffs[0] + len(" and more") * 40)
    base.write_text(base.read_text().replace("No idea.", "No idea at all."))
    assert main(args) == 1
    assert "its answers changed since" in one_line_error(capsys)


def test_release_files_are_checked_against_their_pins_wherever_they_are_read(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture
) -> None:
    release = tmp_path / "release"
    release.mkdir()
    judged = "llama2-13B_icl-oasstgpt_vs_davinci003_autoeval.jsonl"
    lines = (shared_data / "paper_release" / judged).read_text().splitlines(keepends=True)
    (release / judged).write_text("".join(lines[:150]))  # cut at a line boundary: still valid JSON Lines
    mine = release / "mine_vs_davinci003_autoeval.jsonl"
    shutil.copy(shared_data / "paper_release" / judged, mine)
    assert main(["paper-table", "--release", str(release), "--bootstrap", "20"]) == 1
    err = one_line_error(capsys)
    assert f"{release / judged}: sha256" in err and "is not the pinned" in err
    assert main(["winrate", str(release / judged)]) == 1
    assert "is not the pinned" in one_line_error(capsys)
    (release / judged).unlink()
    assert main(["paper-table", "--release", str(release), "--bootstrap", "20"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"note: {mine}: not a pinned file (no sha256 to check it against); read as it is"]
    # a data directory's copy is checked too
    data = tmp_path / "data"
    (data / "paper_release").mkdir(parents=True)
    answers = (shared_data / "paper_release" / "davinci003_results.jsonl").read_text().splitlines(True)
    (data / "paper_release" / "davinci003_results.jsonl").write_text("".join(answers[:100]))
    out = ["--out", str(tmp_path / "o.jsonl")]
    assert (
        main(["retrieve", "--preset", "zero-shot", "--eval", "lima-test", "--data-dir", str(data), *out]) == 1
    )
    assert "is not the pinned" in one_line_error(capsys) and not (tmp_path / "o.jsonl").exists()


def test_a_damaged_embedding_shard_is_named_and_built_again(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "o.jsonl"
    args = ["retrieve", "--preset", "paper", "--limit", "2", "--out", str(out)]
    assert main(args) == 0
    first = out.read_text()
    shards = list((tmp_path / "cache" / "embeddings").glob("*/*.npz"))
    assert shards
    for shard in shards:
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    capsys.readouterr()
    assert main(args) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "damaged cache entry" in line]
    assert len(notes) == len(shards) and str(shards[0].parent) in notes[0]
    assert out.read_text() == first
    assert all(np.load(s) is not None for s in (tmp_path / "cache" / "embeddings").glob("*/*.npz"))


def test_a_truncated_model_is_one_line_and_a_cached_build_is_built_again(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from icalign_nb.cache import cache_path
    from icalign_nb.models.builds import cached_build, local_dir
    from icalign_nb.models.registry import model_spec

    model = tmp_path / "my-model"
    shutil.copytree(local_dir("tiny-random"), model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert generate(tmp_path / "run", "--model", str(model)) == 1
    err = one_line_error(capsys)
    assert f"{weights}:" in err and "(truncated)" in err
    # a damaged build in the cache is said and built again
    monkeypatch.setenv("ICALIGN_CACHE", str(tmp_path / "fresh"))
    target = cache_path("models", "tiny-random", model_spec("tiny-random").source)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    shutil.copy(weights, target / "model.safetensors")
    built = []

    def build(out: Path) -> None:
        built.append(out)
        (out / "config.json").write_text("{}")

    assert cached_build("tiny-random", build) == target and len(built) == 1
    assert "damaged cache entry" in capsys.readouterr().err
    assert not (target / "model.safetensors").exists()
    (target / "config.json").write_text("{")  # cut mid-file
    assert cached_build("tiny-random", build) == target and len(built) == 2
    assert "config.json: not readable JSON" in capsys.readouterr().err


NOTEBOOK_MISTAKES = [
    (["-p", "presets", "zero-shot,bogus"], "unknown preset 'bogus'"),
    (["-p", "preset", "bogus"], "unknown preset 'bogus'"),
    (["-p", "model", "smollm2-135m"], "is a chat model"),
    (["-p", "chat_model", "gemma-3-270m"], "is not a registered chat model"),
    (["-p", "judge", "bogus"], "unknown judge 'bogus'"),
    (["-p", "pool", "missing.jsonl"], "no such file and not a built-in pool"),
    (["-p", "bootstrap", "0"], "bootstrap must be >= 1"),
    (["-p", "seed", "-1"], "seed must be >= 0"),
    (["-p", "query_index", "-1"], "query_index must be >= 0"),
    (["07", "-p", "ablations", "paper-first,bogus"], "unknown ablation 'bogus'"),
    (["-p", "max_new_tokens", "40000"], "leaves no room for a prompt"),
    (["-p", "data_dir", "/no/such/folder"], "data_dir /no/such/folder: not a folder"),
    (["04", "-p", "reference", "eval:bogus"], "no such file and not a built-in eval set"),
    (["08", "-p", "record_prompts", "lima-012,lima-300"], "unknown prompt 'lima-300'"),
    (["00"], "no Jupyter kernel named 'no-such-kernel'"),
]


@pytest.mark.parametrize("args,expected", NOTEBOOK_MISTAKES, ids=[" ".join(a) for a, _ in NOTEBOOK_MISTAKES])
def test_notebook_settings_are_refused_before_any_notebook_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], expected: str
) -> None:
    dirs = [f"--{d}-dir" for d in ("runs", "figures", "work")]
    where = [a for d in dirs for a in (d, str(tmp_path / d.strip("-")))]
    # a kernel that does not exist: a value let through would fail at once, after the run had started
    assert main(["notebooks", "run", *args, *where, "--kernel", "no-such-kernel"]) == 1
    assert expected in one_line_error(capsys)
    assert not any((tmp_path / d.strip("-")).exists() for d in dirs)


def test_paths_given_to_notebooks_are_taken_from_where_the_command_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from icalign_nb.jobs.notebooks import find_notebooks, plan_parameters

    (tmp_path / "mine.jsonl").write_text(json.dumps({"prompt": "Q?", "response": "A."}) + "\n")
    monkeypatch.chdir(tmp_path)
    notebook = find_notebooks(["03"], ROOT / "notebooks")
    plan = plan_parameters(notebook, [("pool", "mine.jsonl"), ("presets", "zero-shot")], {})
    assert plan[notebook[0]]["pool"] == str(tmp_path / "mine.jsonl")  # notebooks run in their own folder


def test_concurrent_judges_never_cut_each_others_replies(tmp_path: Path) -> None:
    writer = (
        "import sys\n"
        "from icalign_nb.judging.cache import JudgmentCache\n"
        "from icalign_nb.judging.comparisons import Reply\n"
        "name, n = sys.argv[1], int(sys.argv[2])\n"
        "for i in range(n):\n"
        "    JudgmentCache('shared').put(f'{name}-{i}', Reply('8 7 ' + 'x' * 20000, (8.0, 7.0)))\n"
    )
    env = {**os.environ, "ICALIGN_CACHE": str(tmp_path / "cache")}
    judges = [
        subprocess.Popen([sys.executable, "-c", writer, name, "150"], env=env, cwd=ROOT) for name in "ab"
    ]
    assert [j.wait(timeout=300) for j in judges] == [0, 0]
    from icalign_nb.judging.cache import JudgmentCache

    journal = JudgmentCache("shared").path
    journal = tmp_path / "cache" / journal.relative_to(journal.parents[1])
    keys = [json.loads(line)["key"] for line in journal.read_text().splitlines()]
    assert sorted(keys) == sorted(f"{name}-{i}" for name in "ab" for i in range(150))


def test_a_refusal_names_the_lock_owner(
    tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture
) -> None:
    base = answers_file(tmp_path, tiny_run)
    with exclusive(tiny_run, "icalign generate"):
        assert main(judge_cmd(tiny_run, base, "http://127.0.0.1:9/v1")) == 1
    err = one_line_error(capsys)
    assert f"in use by pid {os.getpid()} (icalign generate)" in err and "icalign judge" not in err


def test_a_full_disk_while_generating_names_the_file(tmp_path: Path) -> None:
    run = tmp_path / "run"

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2500, 2500))

    args = ["generate", "--run", str(run), "--preset", "zero-shot", *TINY, "--samples", "4"]
    env = {**os.environ, "ICALIGN_CACHE": os.environ["ICALIGN_CACHE"]}
    done = subprocess.run(
        [sys.executable, "-m", "icalign_nb.cli", *args],
        preexec_fn=small_files,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"icalign: error: {run / 'generations.jsonl'}: File too large"
    ]


def test_a_run_whose_data_is_missing_builds_no_model(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ICALIGN_CACHE", str(tmp_path / "empty-cache"))
    (tmp_path / "no-data").mkdir()
    args = ["--eval", "lima-test", "--data-dir", str(tmp_path / "no-data")]
    assert generate(tmp_path / "run", *args) == 1
    assert "not found in the data directory" in one_line_error(capsys)
    assert not (tmp_path / "empty-cache" / "models").exists()


@pytest.mark.slow
def test_ctrl_c_in_notebooks_run_is_one_line_and_keeps_the_record(tmp_path: Path) -> None:
    import nbformat

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    book = nbformat.v4.new_notebook()
    book.cells = [
        nbformat.v4.new_code_cell("seconds = 120  # how long"),
        nbformat.v4.new_code_cell("import time\nprint('working', flush=True)\ntime.sleep(seconds)"),
    ]
    book.cells[0].metadata["tags"] = ["parameters"]
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(book, notebooks / "00_sleep.ipynb")
    where = [a for d in ("runs", "figures", "work") for a in (f"--{d}-dir", str(tmp_path / d))]
    runner = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "icalign_nb.cli",
            "notebooks",
            "run",
            "--notebook-dir",
            str(notebooks),
            *where,
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,  # Ctrl-C reaches the terminal's process group: the runner here
    )
    deadline = time.monotonic() + 120
    while not list((tmp_path / "runs").glob("*/kernels.log")) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(8)  # the kernel is up and in the cell
    os.killpg(runner.pid, signal.SIGINT)
    _, err = runner.communicate(timeout=120)
    assert runner.returncode == 130, err
    assert err.strip().splitlines() == [
        "icalign: interrupted (finished work is kept; re-run the same command to resume)"
    ], err
    (summary,) = (tmp_path / "runs").glob("*/run.json")
    assert json.loads(summary.read_text())["notebooks"][0]["error"] == "interrupted"


@pytest.mark.slow
def test_a_model_conversion_draws_no_bar_of_its_own(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    from icalign_nb.models.builds import _save_dequantised, packaged_model_dir
    from icalign_nb.models.registry import SMOLLM2_GGUF

    _save_dequantised(packaged_model_dir(SMOLLM2_GGUF), tmp_path / "model")
    err = capfd.readouterr().err
    assert "de-quantizing" not in err and "converting SmolLM2-135M-Instruct.Q4_1.gguf once" in err


@pytest.mark.parametrize("kind", ["local", "embedding"])
def test_a_judges_cached_replies_follow_its_models_content_not_its_path(tmp_path: Path, kind: str) -> None:
    """Two copies of one model folder share their cached replies; a folder whose files changed does not."""
    from icalign_nb.judging.spec import parse_judge_spec

    folders = {}
    for name, weights in (("a", b"one"), ("copy-of-a", b"one"), ("changed", b"two")):
        folder = folders[name] = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(weights)
    keys = {name: parse_judge_spec(f"{kind}:{folder}").key for name, folder in folders.items()}
    assert keys["a"] == keys["copy-of-a"] != keys["changed"]
