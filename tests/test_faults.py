"""Fault injection: concurrent writers, changed inputs, failing and misbehaving endpoints, special and
unwritable outputs, bad bytes, torn or misshapen files, a full disk, hangs and killed conversions.

Every case asserts the exit code, the one-line message, and that no row was lost or duplicated.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scripted_server import ScriptedServer

from icalign_nb.cli import main
from icalign_nb.files import exclusive

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "tiny-random", "--max-new-tokens", "4", "--samples", "2", "--limit", "3", "--no-progress"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Judgments and embeddings of these tests go to a cache of their own (models stay shared)."""
    monkeypatch.setenv("ICALIGN_CACHE", str(tmp_path / "cache"))
    shared = Path(os.path.expanduser("~/.cache/icalign-nb/models"))
    if shared.is_dir():
        (tmp_path / "cache").mkdir()
        (tmp_path / "cache" / "models").symlink_to(shared)


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
    assert done.stderr.strip().splitlines() == ["icalign: error: File too large"]
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
