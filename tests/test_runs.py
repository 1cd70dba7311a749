"""Run directories: config, resume without duplicates, refusals, exports, and a SIGKILL mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from icalign_nb.cli import main
from icalign_nb.errors import UserError
from icalign_nb.generation.export import export_run
from icalign_nb.generation.rundir import RECORD_FIELDS, generations_frame
from icalign_nb.generation.runs import RunOptions, RunSpec, run_generation
from icalign_nb.generation.transformers_backend import TransformersBackend
from icalign_nb.generation.types import GenerationConfig
from icalign_nb.retrieval.settings import RetrievalSettings

FAST = GenerationConfig(max_new_tokens=8, samples=2)
SPEC = RunSpec(model="tiny-random", retrieval=RetrievalSettings(preset="zero-shot", limit=3), generation=FAST)
QUIET = RunOptions(batch_size=4, progress=False)


@pytest.fixture(scope="module")
def backend() -> TransformersBackend:
    return TransformersBackend("tiny-random", batch_size=4, device="cpu")


def lines(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "generations.jsonl").read_text().splitlines()]


def test_run_writes_config_and_one_line_per_item(tmp_path: Path, backend) -> None:
    run = tmp_path / "run"
    summary = run_generation(run, SPEC, QUIET, backend=backend)
    assert (summary.total, summary.generated, summary.already_done) == (6, 6, 0)
    rows = lines(run)
    assert all(tuple(r) == RECORD_FIELDS for r in rows)
    assert sorted((r["query_id"], r["sample"]) for r in rows) == [
        (q, s) for q in ("eval-001", "eval-002", "eval-003") for s in (0, 1)
    ]
    assert all(r["preset"] == "zero-shot" and r["demo_ids"] == [] for r in rows)
    config = json.loads((run / "config.json").read_text())
    identity = config["identity"]
    assert identity["model"] == "tiny-random" and identity["backend"] == "transformers"
    decoding, retrieval = identity["generation"], identity["retrieval"]
    assert (decoding["temperature"], decoding["top_p"], decoding["top_k"]) == (0.7, 1.0, 50)
    assert (retrieval["pool"], retrieval["eval"], retrieval["preset"], decoding["max_new_tokens"]) == (
        "starter",
        "starter",
        "zero-shot",
        8,
    )
    assert config["query_ids"] == ["eval-001", "eval-002", "eval-003"]
    # how the model ran: the dtype auto resolved to (the loaded backend's), the BOS rule, the attention
    assert identity["dtype"] == backend.dtype and identity["dtype"] in {"bfloat16", "float32"}
    assert identity["bos"] is False  # SmolLM2's tokenizer adds none
    assert config["attention"].startswith("icalign")


def test_a_run_is_not_resumed_in_another_dtype(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from icalign_nb.models import loading

    fp32 = TransformersBackend("tiny-random", device="cpu", dtype="float32")
    run_generation(tmp_path, replace(SPEC, dtype="float32"), QUIET, backend=fp32)
    with pytest.raises(UserError, match=r"different configuration \(dtype: 'float32' -> 'bfloat16'\)"):
        run_generation(tmp_path, replace(SPEC, dtype="bfloat16"), QUIET)
    with pytest.raises(UserError, match="the loaded model runs in float32, the run asks for bfloat16"):
        run_generation(tmp_path, replace(SPEC, dtype="bfloat16"), QUIET, backend=fp32)
    monkeypatch.setattr(loading, "cpu_has_fast_bf16", lambda: True)  # auto on a bf16 machine: refused
    with pytest.raises(UserError, match=r"\(dtype: 'float32' -> 'bfloat16'\)"):
        run_generation(tmp_path, SPEC, QUIET)
    monkeypatch.setattr(loading, "cpu_has_fast_bf16", lambda: False)  # auto on an fp32 machine: resumes
    assert run_generation(tmp_path, SPEC, QUIET, backend=fp32).generated == 0


def test_resume_skips_done_items_and_repairs_a_torn_line(tmp_path: Path, backend) -> None:
    run = tmp_path / "run"
    run_generation(run, SPEC, QUIET, backend=backend)
    file = run / "generations.jsonl"
    kept = file.read_text().splitlines(keepends=True)
    file.write_text("".join(kept[:3]) + kept[3][:20])  # a kill mid-write leaves a torn tail
    summary = run_generation(run, SPEC, RunOptions(batch_size=2, progress=False), backend=backend)
    assert (summary.already_done, summary.generated) == (3, 3)
    counts = Counter((r["query_id"], r["sample"]) for r in lines(run))
    assert len(counts) == 6 and set(counts.values()) == {1}
    again = run_generation(run, SPEC, QUIET, backend=backend)
    assert again.generated == 0 and len(lines(run)) == 6


def test_a_different_configuration_is_refused(tmp_path: Path, backend) -> None:
    run_generation(tmp_path, SPEC, QUIET, backend=backend)
    other = replace(SPEC, generation=GenerationConfig(8, 0.9, samples=2))
    with pytest.raises(UserError, match=r"different configuration \(generation.temperature: 0.7 -> 0.9\)"):
        run_generation(tmp_path, other, QUIET, backend=backend)


def test_bad_run_directories(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is not a directory"):
        run_generation(tmp_path / "file", SPEC, QUIET)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds no run"):
        run_generation(tmp_path / "full", SPEC, QUIET)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{oops")
    with pytest.raises(UserError, match=r"config.json:1: malformed JSON"):
        run_generation(tmp_path / "broken", SPEC, QUIET)


def test_exports_in_paper_and_alpaca_eval_formats(tmp_path: Path, backend) -> None:
    run = tmp_path / "run"
    run_generation(run, SPEC, QUIET, backend=backend)
    frame = generations_frame(run)
    assert export_run(run, "paper", tmp_path / "paper.jsonl") == 3
    paper = [json.loads(x) for x in (tmp_path / "paper.jsonl").read_text().splitlines()]
    assert [set(p) for p in paper] == [{"prompt", "response_list"}] * 3
    first = frame.filter(frame["query_id"] == "eval-001").sort("sample")
    assert (
        paper[0]["prompt"] == first["query"][0] and paper[0]["response_list"] == first["response"].to_list()
    )
    export_run(run, "alpaca_eval", tmp_path / "ae.json", sample=1)
    ae = json.loads((tmp_path / "ae.json").read_text())
    assert ae[0] == {
        "instruction": first["query"][0],
        "output": first["response"][1],
        "generator": "tiny-random_zero-shot",
    }
    from icalign_nb.data.release import load_release_outputs

    assert load_release_outputs(tmp_path / "paper.jsonl").height == 6  # the paper's own reader takes it


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cases = [
        (["--model", "gpt-17"], "unknown model 'gpt-17'; registered: gemma-3-270m, smollm2-135m"),
        (
            # vLLM cannot generate past the context (transformers may, as the reference did): refused
            # before the backend loads
            [
                "--model",
                "tiny-random",
                "--preset",
                "zero-shot",
                "--max-new-tokens",
                "2040",
                "--backend",
                "vllm",
            ],
            "with max_new_tokens 2040 over the model's context",
        ),
        (["--model", "tiny-random", "--max-new-tokens", "4096"], "leaves no room"),
    ]
    for extra, message in cases:
        assert main(["generate", "--run", str(tmp_path / "r"), "--no-progress", *extra]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    (tmp_path / "f").write_text("x")
    assert main(["generate", "--run", str(tmp_path / "f"), "--model", "tiny-random"]) == 1
    assert "is not a directory" in capsys.readouterr().err
    assert main(["export", "--run", str(tmp_path / "none"), "--format", "paper", "--out", "x.jsonl"]) == 1
    assert "not a run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_has_every_item_once(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [
        str(Path(sys.executable).with_name("icalign")),
        "generate",
        "--run",
        str(run),
        "--model",
        "tiny-random",
        "--preset",
        "zero-shot",
        "--limit",
        "8",
        "--samples",
        "2",
        "--max-new-tokens",
        "16",
        "--batch-size",
        "2",
        "--no-progress",
    ]
    file = run / "generations.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny model: one thread is fastest on a busy machine
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if file.exists() and len(file.read_bytes().splitlines()) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"finished before the kill: {proc.stderr.read().decode()[-500:]}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    partial = len(file.read_bytes().splitlines())
    assert 2 <= partial < 16
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "already done" in done.stdout
    keys = Counter((r["query_id"], r["sample"]) for r in lines(run))
    assert len(keys) == 16 and set(keys.values()) == {1}
