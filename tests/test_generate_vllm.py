"""The vLLM backend without vLLM: the install hint, request construction and stop handling."""

from __future__ import annotations

import importlib.util
import sys
import types
from types import SimpleNamespace

import pytest

from icalign_nb.errors import UserError
from icalign_nb.generation import vllm_backend as vb
from icalign_nb.generation.types import GenerationConfig, Request
from icalign_nb.retrieval.prompts import PAPER_STOP

REQ = Request("q1", 2, "Question: hi\n\nHere\u2019s an example answer:", PAPER_STOP, 1234, (10, 11, 12))


def output(text: str, finish: str, stop_reason: object, n_tokens: int = 5) -> SimpleNamespace:
    return SimpleNamespace(
        prompt_token_ids=[10, 11, 12],
        outputs=[
            SimpleNamespace(
                text=text, token_ids=list(range(n_tokens)), finish_reason=finish, stop_reason=stop_reason
            )
        ],
    )


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_missing_vllm_is_one_clear_line() -> None:
    with pytest.raises(UserError) as err:
        vb.VLLMBackend("tiny-random")
    assert "pip install 'icalign-nb[vllm]'" in str(err.value) and "\n" not in str(err.value)


def test_sampling_params_follow_the_config() -> None:
    kw = vb.sampling_kwargs(REQ, GenerationConfig(max_new_tokens=77, temperature=0.7, top_p=0.9, top_k=50))
    assert kw["temperature"] == 0.7 and kw["top_p"] == 0.9 and kw["top_k"] == 50
    assert kw["max_tokens"] == 77 and kw["seed"] == 1234 and kw["n"] == 1
    assert kw["stop"] == ["\nQuestion:"] and kw["include_stop_str_in_output"] is False
    assert vb.sampling_kwargs(REQ, GenerationConfig(top_k=None))["top_k"] == -1
    assert vb.prompt_input(REQ) == {"prompt_token_ids": [10, 11, 12]}


def test_stop_reasons_and_safety_cut() -> None:
    stop = vb.to_result(REQ, output(" Paris.", "stop", "\nQuestion:"), 0.5)
    assert (stop.response, stop.stopped_by, stop.n_prompt_tokens, stop.n_generated_tokens) == (
        "Paris.",
        "stop",
        3,
        5,
    )
    assert vb.to_result(REQ, output(" Paris.", "stop", None), 0.5).stopped_by == "eos"
    assert vb.to_result(REQ, output(" Paris. Paris.", "length", None), 0.5).stopped_by == "length"
    leaked = vb.to_result(REQ, output(" Paris.\nQuestion: more", "length", None), 0.5)
    assert (leaked.response, leaked.stopped_by) == ("Paris.", "stop")


def test_backend_drives_a_vllm_shaped_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict = {}

    class FakeLLM:
        def __init__(self, **kwargs: object) -> None:
            calls["init"] = kwargs

        def generate(self, prompts: list, params: list, use_tqdm: bool = True) -> list:
            calls.setdefault("prompts", []).extend(prompts)
            calls.setdefault("params", []).extend(params)
            return [output(" ok\nQuestion: x", "stop", "\nQuestion:") for _ in prompts]

    fake = types.ModuleType("vllm")
    fake.LLM = FakeLLM
    fake.SamplingParams = lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", fake)
    backend = vb.VLLMBackend("tiny-random", tensor_parallel_size=2, chunk_size=2)
    reqs = [REQ, Request("q2", 0, "p", PAPER_STOP, 7, (1,)), Request("q3", 0, "p", PAPER_STOP, 8, (2,))]
    chunks = list(backend.generate(reqs, GenerationConfig()))
    assert [len(c) for c in chunks] == [2, 1]
    assert calls["init"]["tensor_parallel_size"] == 2 and calls["init"]["dtype"] == "bfloat16"
    assert [p["seed"] for p in calls["params"]] == [1234, 7, 8]
    assert all(r.response == "ok" and r.stopped_by == "stop" for c in chunks for r in c)
