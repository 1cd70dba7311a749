"""Loaders on the real reference files, the built-in starter data, and bad-input messages."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from icalign_nb.data import fetch, loaders, release
from icalign_nb.errors import UserError
from icalign_nb.files import sha256_file

CATEGORIES = {
    "explanation",
    "how-to",
    "coding",
    "math",
    "writing",
    "summarising",
    "brainstorm",
    "planning",
    "classification",
    "role-play",
    "refusal",
}


def test_starter_pool_is_large_varied_and_well_formed():
    pool = loaders.load_pool("starter")
    assert pool.height >= 150
    assert set(pool["category"]) == CATEGORIES
    assert pool["id"].n_unique() == pool.height
    words = pool["response"].str.split(" ").list.len()
    assert words.min() >= 40 and words.max() <= 250


def test_starter_eval_has_references_weaker_baselines_and_no_pool_prompt():
    ev = loaders.load_eval("starter")
    assert ev.height >= 40 and set(ev["category"]) == CATEGORIES
    assert ev["reference"].null_count() == 0 and ev["baseline"].null_count() == 0
    assert (ev["baseline"].str.len_chars() < ev["reference"].str.len_chars()).all()
    pool_prompts = {p.strip().lower() for p in loaders.load_pool("starter")["prompt"]}
    assert not pool_prompts & {p.strip().lower() for p in ev["prompt"]}


def test_pinned_hashes_match_the_reference_copies(shared_data: Path):
    for line in (shared_data / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split()
        rel = rel.removeprefix("./")
        if rel in fetch.REMOTE_FILES:
            assert fetch.REMOTE_FILES[rel].sha256 == digest == sha256_file(shared_data / rel), rel


def test_paper_release_loaders(data_env: Path):
    lima = loaders.load_eval("lima-test")
    assert lima.height == 300 and lima["id"][0] == "lima-000"
    base = loaders.load_baseline("davinci003")
    assert base.height == 300 and base["prompt"].to_list() == lima["prompt"].to_list()
    for path in sorted((data_env / "paper_release").glob("*_outputs_temp0.7.jsonl")):
        out = release.load_release_outputs(path)
        assert out.height == 1500 and out["sample"].max() == 4
    judged = release.load_release_judgments(
        data_env / "paper_release/llama2chat-13B_vs_chatgpt_autoeval.jsonl"
    )
    assert judged.height == 300 and judged["raw"][0][0].isdigit()


def test_alpaca_pool_joins_input_and_drops_empty_responses_loudly(data_env: Path, capsys):
    pool = loaders.load_pool("alpaca")
    assert pool.height == 4998  # two rows of the file have an empty output
    assert "left out of the pool" in capsys.readouterr().err
    raw = json.loads((data_env / "alpaca/alpaca_5000.json").read_text())
    first_with_input = next(i for i, r in enumerate(raw) if r["input"].strip())
    row = pool.filter(pl.col("id") == f"alpaca-{first_with_input:05d}").row(0, named=True)
    assert row["prompt"] == raw[first_with_input]["instruction"] + "\n\n" + raw[first_with_input]["input"]


def test_alpaca_eval_sets_and_mt_bench(data_env: Path):
    ae = loaders.load_eval("alpaca-eval")
    assert ae.height == 805
    assert set(ae["category"]) == {"helpful_base", "koala", "oasst", "selfinstruct", "vicuna"}
    assert loaders.load_pool("alpaca-eval-gpt4").height == 805
    mtb = loaders.load_eval("mt-bench")
    assert mtb.height == 80 and mtb["id"][0] == "mtb-81"


def test_plain_files_with_a_field_mapping(tmp_path: Path):
    rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(3)]
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pool = loaders.load_pool(path, fields={"prompt": "question", "response": "answer"})
    assert pool["prompt"].to_list() == ["q0", "q1", "q2"] and pool["id"][0] == "mine-00000"
    pq = tmp_path / "mine.parquet"
    pl.DataFrame({"prompt": ["p"], "response": ["r"]}).write_parquet(pq)
    assert loaders.load_pool(pq)["response"].to_list() == ["r"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"prompt": "a", "response": "b"}\n{"prompt": "c", "resp', "bad.jsonl:2: malformed JSON"),
        (
            '{"prompt": "a", "response": "b"}\n{"prompt": "c"}\n',
            "bad.jsonl:2: missing field 'response' (fields found: prompt)",
        ),
        ('{"prompt": "  ", "response": "b"}\n', "bad.jsonl:1: field 'prompt' is empty"),
        (
            '{"id": "x", "prompt": "a", "response": "b"}\n{"id": "x", "prompt": "c", "response": "d"}\n',
            "bad.jsonl:2: field 'id': duplicate id 'x'",
        ),
        ("\n", "the pool is empty"),
    ],
)
def test_bad_pool_files_name_file_line_and_field(tmp_path: Path, content: str, expected: str):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(UserError) as err:
        loaders.load_pool(path)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_missing_data_dir_file_is_one_clear_line(tmp_path: Path):
    with pytest.raises(UserError, match="not found in the data directory"):
        loaders.load_eval("lima-test", data_dir=tmp_path)
