"""Paper-exact prompts and packing, real retrieval with MiniLM, and the retrieve command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from icalign_nb.cli import main
from icalign_nb.data.loaders import load_pool
from icalign_nb.errors import UserError
from icalign_nb.retrieval import prompts
from icalign_nb.retrieval.encoders import Encoder
from icalign_nb.retrieval.presets import get_preset
from icalign_nb.retrieval.retriever import Retriever, pack
from icalign_nb.retrieval.settings import RetrievalSettings, load_queries


def test_golden_prompt_written_out_by_hand():
    demos = [("  What is 2+2?\n", "4."), ("Name a colour.", " Blue. ")]
    expected = (
        "Question: What is 2+2?\n\nHere\u2019s an example answer: 4."
        "\n\n"
        "Question: Name a colour.\n\nHere\u2019s an example answer: Blue."
        "\n\n"
        "Question: Why is the sky blue? \n\nHere\u2019s an example answer:"
    )
    assert prompts.icl_prompt("Why is the sky blue? ", demos) == expected
    assert prompts.zero_shot_prompt("  Why? ") == "Question: Why?\n\nAnswer:"
    assert prompts.PAPER_STOP == ("\nQuestion:",)
    assert "\u2019" in prompts.QUERY_TEMPLATE and "'" not in prompts.QUERY_TEMPLATE


def test_budget_text_counts_the_separator():
    assert prompts.demo_budget_text("p", "r") == "Question: p\n\nHere\u2019s an example answer: r\n\n"


@pytest.mark.parametrize(
    ("lengths", "budget", "reasons"),
    [
        # fits exactly: the running total may equal the budget
        ([100, 200, 300], 600, ["kept", "kept", "kept"]),
        # a demo over the per-demo limit is skipped and the walk goes on
        ([100, 501, 200], 3000, ["kept", "over_instance_limit", "kept"]),
        # the first overflow stops packing even if later demos would fit
        ([400, 400, 300, 10], 1000, ["kept", "kept", "over_budget", "after_stop"]),
        # nothing fits: no demos at all
        ([600, 700], 3000, ["over_instance_limit", "over_instance_limit"]),
        ([50], 0, ["over_budget"]),
    ],
)
def test_packing_edge_cases(lengths, budget, reasons):
    config = get_preset("paper")
    decisions = pack(list(range(len(lengths))), lengths, config, budget)
    assert [r for _, r in decisions] == reasons


def _pool(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"d{i}" for i in range(n)],
            "prompt": [f"prompt {i}" for i in range(n)],
            "response": [f"answer {i} " * (i + 1) for i in range(n)],
            "category": [""] * n,
            "source": ["t"] * n,
        }
    )


def test_assemble_orders_most_relevant_last_and_records_why(tiny_tokenizer):
    pool = _pool(4)
    config = get_preset("paper", max_k=4, demo_budget=40)
    r = Retriever(pool, config, tiny_tokenizer, encoder=_NoEncoder(), preset_name="paper")
    lengths = r.demo_lengths()
    top = np.array([[2, 0, 3, 1]])
    out = r.assemble(["q1"], ["Why?"], top, np.array([[4.0, 3.0, 2.0, 1.0]]), [lengths[2] + lengths[0]])[0]
    assert [c.reason for c in out.candidates] == ["kept", "kept", "over_budget", "after_stop"]
    assert out.demo_ids == ["d0", "d2"]  # reversed: best (d2) right before the query
    assert out.prompt == prompts.icl_prompt(
        "Why?", [("prompt 0", "answer 0 "), ("prompt 2", "answer 2 " * 3)]
    )
    assert [c.n_tokens for c in out.candidates] == [lengths[i] for i in [2, 0, 3, 1]]
    text = prompts.demo_budget_text("prompt 2", "answer 2 " * 3)
    assert lengths[2] == len(tiny_tokenizer(text, add_special_tokens=False).input_ids)


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("paper", lambda d: prompts.icl_prompt("Why?", d)),
        ("paper-k2", lambda d: prompts.icl_prompt("Why?", d[-2:])),  # the two best, best last
        ("paper-k0", lambda d: prompts.icl_prompt("Why?", [])),
        ("paper-first", lambda d: prompts.icl_prompt("Why?", d[::-1])),
        ("paper-questions-only", lambda d: "\n\n".join([*(f"Question: {p}" for p, _ in d), QUERY])),
        (
            "paper-answers-only",
            lambda d: "\n\n".join([*(f"Here\u2019s an example answer: {a}" for _, a in d), QUERY]),
        ),
        (
            "paper-format-only",
            lambda d: "\n\n".join(["Question: \n\nHere\u2019s an example answer: "] * 4 + [QUERY]),
        ),
        ("paper-system", lambda d: prompts.SYSTEM_TEXT + "\n\n" + prompts.icl_prompt("Why?", d)),
        ("system-only", lambda d: prompts.SYSTEM_TEXT + "\n\n" + QUERY),
    ],
)
def test_context_ablations_change_one_thing(tiny_tokenizer, preset, expected):
    pool = _pool(4)
    r = Retriever(pool, get_preset(preset, max_k=4), tiny_tokenizer, encoder=_NoEncoder(), preset_name=preset)
    out = r.assemble(["q1"], ["Why?"], np.array([[3, 2, 1, 0]]), np.array([[4.0, 3.0, 2.0, 1.0]]), [3000])[0]
    paper_order = [
        (f"prompt {i}", (f"answer {i} " * (i + 1)).strip()) for i in (0, 1, 2, 3)
    ]  # best (d3) last
    assert out.prompt == expected(paper_order)
    k = get_preset(preset).max_demos
    kept = [c.kept for c in out.candidates]
    assert sum(kept) == (4 if k is None else min(k, 4)) and kept == sorted(kept, reverse=True)
    assert [c.reason for c in out.candidates if not c.kept] == ["over_k"] * (4 - sum(kept))


def test_shuffled_answers_move_every_answer_and_keep_the_questions(tiny_tokenizer):
    pool = _pool(5)
    paper = Retriever(pool, get_preset("paper", max_k=5), tiny_tokenizer, encoder=_NoEncoder())
    shuffled = Retriever(
        pool, get_preset("paper-shuffled-answers", max_k=5), tiny_tokenizer, encoder=_NoEncoder()
    )
    args = (["q1"], ["Why?"], np.array([[4, 3, 2, 1, 0]]), np.array([[5.0, 4, 3, 2, 1]]), [3000])
    a, b = paper.assemble(*args)[0], shuffled.assemble(*args)[0]
    assert a.demo_ids == b.demo_ids and a.prompt != b.prompt
    blocks_a, blocks_b = a.prompt.split("\n\nQuestion: "), b.prompt.split("\n\nQuestion: ")
    questions = [x.split("\n\n")[0] for x in blocks_a]
    assert questions == [x.split("\n\n")[0] for x in blocks_b]  # the same questions, same order
    answers_a = [x.split("answer: ")[-1] for x in blocks_a[:-1]]
    answers_b = [x.split("answer: ")[-1] for x in blocks_b[:-1]]
    assert sorted(answers_a) == sorted(answers_b)  # the same answers ...
    assert all(x != y for x, y in zip(answers_a, answers_b, strict=True))  # ... none in its own place
    assert shuffled.assemble(*args)[0].prompt == b.prompt  # seeded: the same shuffle again


QUERY = "Question: Why?\n\nHere\u2019s an example answer:"


class _NoEncoder(Encoder):
    """Stands in where the test supplies the ranking itself (no model is loaded)."""

    @property
    def key(self) -> str:  # its own cache entries: never mixed with the real encoder's
        return "no encoder: zero vectors of width 3"

    def encode(self, texts, sort=True, batch_size=None):
        return np.zeros((len(texts), 3), dtype=np.float32)


@pytest.fixture(scope="module")
def starter_retriever(tiny_tokenizer):
    return Retriever(load_pool("starter"), get_preset("paper"), tiny_tokenizer, Encoder("minilm"), "paper")


def test_real_retrieval_finds_the_pool_prompt_itself(starter_retriever):
    pool = starter_retriever.pool
    row = pool.row(17, named=True)
    out = starter_retriever.retrieve(pl.DataFrame({"id": ["q"], "prompt": [row["prompt"]]}))[0]
    assert out.candidates[0].id == row["id"] and out.candidates[0].rank == 1
    assert out.demo_ids[-1] == row["id"]  # most relevant last
    scores = [c.score for c in out.candidates]
    assert scores == sorted(scores, reverse=True) and len(scores) == 20
    assert out.prompt.endswith(f"Question: {row['prompt']}\n\nHere\u2019s an example answer:")
    kept_tokens = sum(c.n_tokens for c in out.candidates if c.kept)
    assert kept_tokens <= 3000 and out.stop == ["\nQuestion:"]


def test_dot_and_cosine_are_both_available(starter_retriever, tiny_tokenizer):
    query = pl.DataFrame({"id": ["q"], "prompt": ["How should I plan a week of study for a chemistry exam?"]})
    cos = Retriever(
        starter_retriever.pool,
        get_preset("paper-cosine"),
        tiny_tokenizer,
        starter_retriever.encoder,
        "paper-cosine",
    ).retrieve(query)[0]
    dot = starter_retriever.retrieve(query)[0]
    assert all(-1.0001 <= c.score <= 1.0001 for c in cos.candidates)
    assert max(c.score for c in dot.candidates) > 1.5  # unnormalised MiniLM dot products


def test_context_limit_shrinks_the_budget(starter_retriever):
    query = pl.DataFrame({"id": ["q"], "prompt": ["Explain photosynthesis simply."]})
    out = starter_retriever.retrieve(query, context_limit=600)[0]
    assert out.budget < 600 and sum(c.n_tokens for c in out.candidates if c.kept) <= out.budget
    with pytest.raises(UserError, match="longer than the model's context"):
        starter_retriever.retrieve(query, context_limit=3)


@pytest.mark.parametrize("preset", ["paper", "random"])
def test_every_prompt_fits_the_context_limit_as_tokenized_whole(tiny_tokenizer, preset):
    """Demos counted one by one may tokenize longer when joined; the prompt is shrunk until it fits."""
    queries = load_queries(RetrievalSettings(), None)  # the 44 starter queries: a few overshot before
    r = Retriever(load_pool("starter"), get_preset(preset), tiny_tokenizer, Encoder("minilm"), preset)
    for limit in (1999, 1200):
        out = r.retrieve(queries, context_limit=limit)
        lengths = [len(tiny_tokenizer(x.prompt, add_special_tokens=False).input_ids) for x in out]
        assert max(lengths) <= limit and all(x.demo_ids for x in out)


def test_random_control_is_seeded_per_query_and_sample(tiny_tokenizer):
    pool = load_pool("starter")
    r = Retriever(pool, get_preset("random", seed=7), tiny_tokenizer, preset_name="random")
    q = pl.DataFrame({"id": ["a"], "prompt": ["anything"]})
    s0, again, s1 = r.retrieve(q, sample=0)[0], r.retrieve(q, sample=0)[0], r.retrieve(q, sample=1)[0]
    assert s0.demo_ids == again.demo_ids and s0.demo_ids != s1.demo_ids
    assert all(c.score is None for c in s0.candidates) and len(s0.candidates) == 20


def test_zero_shot_and_urial_prompts(tiny_tokenizer):
    q = pl.DataFrame({"id": ["a"], "prompt": ["Name three rivers."]})
    pool = _pool(1)
    zs = Retriever(pool, get_preset("zero-shot"), tiny_tokenizer, preset_name="zero-shot").retrieve(q)[0]
    assert zs.prompt == "Question: Name three rivers.\n\nAnswer:" and zs.demo_ids == []
    ur = Retriever(pool, get_preset("urial"), tiny_tokenizer, preset_name="urial").retrieve(q)[0]
    assert ur.prompt.startswith("# Instruction") and ur.prompt.count("# Query:") == 4
    assert ur.prompt.endswith("# Query:\n```\nName three rivers.\n```\n\n# Answer:\n```\n")
    assert prompts.clean_answer("They are ...\n```\n\n# Query:\n```", ur.stop) == ("They are ...", True)


def test_urial_preset_reads_the_original_prompt_files(shared_data: Path, tiny_tokenizer):
    config = get_preset("urial", urial_prompt=str(shared_data / "urial/inst_1k_v4.help.txt"))
    out = Retriever(_pool(1), config, tiny_tokenizer, preset_name="urial").retrieve(
        pl.DataFrame({"id": ["a"], "prompt": ["Hi"]})
    )[0]
    assert out.prompt.count("# Query:\n```") == 4  # three demos + the query


def test_retrieve_command_writes_the_contract(tmp_path: Path):
    out = tmp_path / "r.jsonl"
    assert (
        main(["retrieve", "--pool", "starter", "--eval", "starter", "--limit", "3", "--out", str(out)]) == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3
    assert set(rows[0]) == {
        "query_id",
        "query",
        "preset",
        "demo_ids",
        "candidates",
        "prompt",
        "stop",
        "budget",
    }
    assert set(rows[0]["candidates"][0]) == {"id", "rank", "score", "n_tokens", "kept", "reason"}
    kept = [c["id"] for c in rows[0]["candidates"] if c["kept"]]
    assert rows[0]["demo_ids"] == kept[::-1]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--encoder", "nope"], "unknown encoder 'nope'"),
        (["--max-k", "500"], "max_k=500 is larger than the pool"),
        (["--pool", "POOL_BAD"], "bad.jsonl:2: missing field 'response' (fields found: prompt)"),
        (["--pool", "POOL_DUP"], "dup.jsonl:2: field 'id': duplicate id 'x'"),
        (["--pool", "POOL_EMPTY"], "empty.jsonl: the pool is empty"),
        (["--eval", "EVAL_NOPROMPT"], "noprompt.jsonl:1: missing field 'prompt' (fields found: question)"),
        (["--eval", "EVAL_JSON"], "broken.jsonl:1: malformed JSON"),
    ],
)
def test_retrieve_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, capsys, args, expected):
    files = {
        "POOL_BAD": _write(tmp_path / "bad.jsonl", ['{"prompt": "a", "response": "b"}', '{"prompt": "c"}']),
        "POOL_DUP": _write(tmp_path / "dup.jsonl", ['{"id": "x", "prompt": "a", "response": "b"}'] * 2),
        "POOL_EMPTY": _write(tmp_path / "empty.jsonl", []),
        "EVAL_NOPROMPT": _write(tmp_path / "noprompt.jsonl", ['{"question": "a"}']),
        "EVAL_JSON": _write(tmp_path / "broken.jsonl", ['{"prompt": ']),
    }
    args = [str(files.get(a, a)) for a in args]
    out = tmp_path / "out.jsonl"
    assert main(["retrieve", *args, "--limit", "2", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1 and err.startswith("icalign: error:")
    assert not out.exists()


def test_a_usage_error_exits_2_and_names_the_option(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["retrieve", "--preset", "nope", "--out", str(tmp_path / "x.jsonl")])
    assert exit_.value.code == 2 and "--preset: invalid choice: 'nope'" in capsys.readouterr().err
    for limit in ("0", "-1", "x"):
        with pytest.raises(SystemExit) as exit_:
            main(["retrieve", "--limit", limit, "--out", str(tmp_path / "x.jsonl")])
        assert exit_.value.code == 2 and "--limit" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_retrieval_agrees_and_reports_a_speedup(tmp_path: Path, capsys):
    assert main(["bench", "retrieval", "--pool", "starter", "--eval", "starter", "--limit", "8"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("same demos selected for all 8 queries") for line in lines)
    total = next(line.split() for line in lines if line.startswith("total"))
    reference, package = float(total[1]), float(total[2])
    assert lines[-1].startswith("speedup: ")
    assert float(lines[-1].split()[1].rstrip("x")) == pytest.approx(reference / package, rel=0.05, abs=0.1)
