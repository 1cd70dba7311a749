"""`icalign generate --backend openai` and `icalign judge --judge openai:…` against a real
OpenAI-compatible server: Hugging Face's `transformers serve` on 127.0.0.1 with SmolLM2-135M.

That server refuses `top_k` (422 "Unexpected fields in the request") and samples only when asked to
through its `generation_config` field; the backend learns both from the refusal.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from icalign_nb.cli import main

TRANSFORMERS_CLI = shutil.which("transformers") or str(Path(sys.executable).with_name("transformers"))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(TRANSFORMERS_CLI).exists()
        or any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn")),
        reason="no `transformers serve`: needs fastapi and uvicorn (the test extra)",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=2) as reply:
        return json.load(reply)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`transformers serve` with the SmolLM2 folder the package builds; (base URL, served model name)."""
    from icalign_nb.errors import UserError
    from icalign_nb.models.builds import local_dir

    try:
        folder = local_dir("smollm2-135m")
    except UserError as exc:
        pytest.skip(f"no SmolLM2 model folder: {exc}")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1", TOKENIZERS_PARALLELISM="false"
    )
    cmd = [TRANSFORMERS_CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", folder]
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited ({proc.returncode}): {log_path.read_text()[-1500:]}")
            try:
                if _get(f"{base}/health") == {"status": "ok"}:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not ready in 180 s: {log_path.read_text()[-1500:]}")
            time.sleep(0.25)
        yield f"{base}/v1", folder
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def generate(run: Path, url: str, folder: str, *extra: str) -> list[str]:
    """An `icalign generate` command line against the server: zero-shot, 2 queries, 16 new tokens."""
    return [
        *("generate", "--run", str(run), "--model", "smollm2-135m", "--backend", "openai"),
        *("--base-url", url, "--served-model", folder, "--preset", "zero-shot", "--limit", "2"),
        *("--max-new-tokens", "16", "--concurrency", "2", "--no-progress", *extra),
    ]


def test_generate_and_judge_against_transformers_serve(
    served: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, folder = served
    run = tmp_path / "run"
    assert main(generate(run, url, folder, "--samples", "2")) == 0
    err = capsys.readouterr().err
    assert "takes no top-k" not in err and "samples identical" not in err  # top-k and sampling applied
    rows = _rows(run / "generations.jsonl")
    assert len(rows) == 4 and all("Question:" not in r["response"] for r in rows)
    assert {r["stopped_by"] for r in rows} <= {"stop", "length", "unknown"}
    assert all(r["seconds"] > 0 for r in rows)
    answers: dict[str, set[str]] = {}
    for r in rows:
        answers.setdefault(r["query_id"], set()).add(r["response"])
    assert any(len(texts) == 2 for texts in answers.values())  # the server sampled
    # the same run again: nothing left to ask
    assert main(generate(run, url, folder, "--samples", "2")) == 0
    assert len(_rows(run / "generations.jsonl")) == 4

    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    judge = ["judge", "--run", str(run), "--baseline", "starter", "--judge", f"openai:{folder}"]
    judge += ["--base-url", url, "--max-tokens", "16", "--concurrency", "2", "--no-progress"]
    assert main(judge) == 0
    judged = _rows(run / "judgments.jsonl")
    assert len(judged) == 4 and all(j["raw"] for j in judged)  # a 135M base model's replies, kept


def test_without_top_k_a_server_that_does_not_sample_is_warned_about(
    served: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url, folder = served
    extra = ("--samples", "2", "--top-k", "0", "--limit", "1")
    assert main(generate(tmp_path / "run", url, folder, *extra)) == 0
    err = capsys.readouterr().err
    assert "all samples identical for 1 prompt(s) at temperature 0.7" in err
