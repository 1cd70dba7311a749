"""The paper's GPU setting, tested on CPU where a CPU can: the Llama-2-chat row's prompt and token ids,
BOS by model family whatever the model is called, float16 and `auto` by compute capability, prompts to
servers as token ids, answers past the context on transformers (and the shrink counted elsewhere),
and the token budget that fits a card's free memory.

Llama-2's tokenizer cannot be fetched here: a Llama-2-style tokenizer (sentencepiece-style BPE with
byte fallback, `▁` for spaces, `<s>` added first, as Llama-2's tokenizer.json) is trained on a few
sentences in the test; its raw `tokenizers` object, with special tokens, is the reference code's
`tokenizer(formatted_prompt)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from scripted_server import ScriptedServer, completion_reply

from icalign_nb.cli import main
from icalign_nb.errors import UserError
from icalign_nb.generation import vllm_backend as vb
from icalign_nb.generation.runs import (
    RunOptions,
    RunSpec,
    build_requests,
    build_retrievals,
    resolve_run,
    run_generation,
)
from icalign_nb.generation.server_backend import ServerBackend, ServerOptions, request_body
from icalign_nb.generation.types import GenerationConfig, Request
from icalign_nb.models import loading, memory
from icalign_nb.models.registry import REGISTRY, model_spec
from icalign_nb.models.tokens import bos_rule, chat_format, encode_prompts, model_family, template_bos
from icalign_nb.retrieval.prompts import LLAMA_CHAT_SYSTEM, LLAMA_CHAT_TEMPLATE, chat_prompt
from icalign_nb.retrieval.settings import RetrievalSettings

QUERY = "  How do I bake bread at home?  "
# The reference's formatted prompt for QUERY (decode_llamachat.py: B_INST, B_SYS, the default system
# prompt, E_SYS, the stripped query, E_INST), written out here independently of the package's template.
REFERENCE_TEXT = "[INST] <<SYS>>\n" + LLAMA_CHAT_SYSTEM + "\n<</SYS>>\n\nHow do I bake bread at home? [/INST]"
# A chat template as Llama-2-chat's tokenizer ships one: BOS as text, then the same layout.
LLAMA_JINJA = (
    "{{ bos_token }}{% set ns = namespace(sys='') %}{% for m in messages %}{% if m['role'] == 'system' %}"
    "{% set ns.sys = '<<SYS>>\\n' + m['content'] + '\\n<</SYS>>\\n\\n' %}{% else %}"
    "{{ '[INST] ' + ns.sys + m['content'].strip() + ' [/INST]' }}{% endif %}{% endfor %}"
)


def train_tokenizer(bos: str, specials: list[str], adds_bos: bool) -> object:
    """A small BPE in Llama-2's layout (▁ for spaces, byte fallback), BOS added first when `adds_bos`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=specials[0], byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    corpus = [
        LLAMA_CHAT_SYSTEM,
        REFERENCE_TEXT,
        "Question: what is bread?\n\nHere\u2019s an example answer: food",
    ]
    byte_pieces = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=[*specials, *byte_pieces], show_progress=False
    )
    tok.train_from_iterator(corpus * 3, trainer)
    if adds_bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    return tok


def model_folder(folder: Path, config: object, tokenizer: object, weights: bool = False) -> Path:
    """A loadable folder: config, tokenizer and (tiny, random) weights if asked."""
    import torch
    from transformers import AutoModelForCausalLM

    folder.mkdir(parents=True)
    tokenizer.save_pretrained(folder)
    config.save_pretrained(folder)
    if weights:
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llama_raw() -> object:
    """The raw Llama-2-style tokenizer: what `tokenizer(text)` of the reference code computes."""
    return train_tokenizer("<s>", ["<unk>", "<s>", "</s>"], adds_bos=True)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, llama_raw: object) -> dict[str, Path]:
    """Model folders: a Llama-2-chat and a Llama base named otherwise, a Gemma, and another Llama-shaped
    model with a tokenizer of its own (BOS `<|start|>`, added by default)."""
    from transformers import Gemma3TextConfig, LlamaConfig, LlamaTokenizerFast, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("models")
    llama = LlamaTokenizerFast(
        tokenizer_object=llama_raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>", add_bos_token=True
    )
    tiny = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    llama_config = LlamaConfig(
        vocab_size=len(llama), max_position_embeddings=4096, bos_token_id=1, eos_token_id=2, **tiny
    )
    gemma_raw = train_tokenizer("<bos>", ["<unk>", "<pad>", "<eos>", "<bos>"], adds_bos=False)
    gemma = PreTrainedTokenizerFast(
        tokenizer_object=gemma_raw, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>"
    )
    gemma_config = Gemma3TextConfig(vocab_size=len(gemma), head_dim=8, num_key_value_heads=1, **tiny)
    other_raw = train_tokenizer("<|start|>", ["<unk>", "<|start|>", "<|end|>"], adds_bos=True)
    other = PreTrainedTokenizerFast(
        tokenizer_object=other_raw, bos_token="<|start|>", eos_token="<|end|>", unk_token="<unk>"
    )
    return {
        "chat": model_folder(root / "Llama-2-13b-chat-hf", llama_config, llama, weights=True),
        "llama": model_folder(root / "my-llama-base", llama_config, llama),
        "gemma": model_folder(root / "my-gemma", gemma_config, gemma),
        "other": model_folder(root / "my-other", llama_config, other),
    }


def test_llama_chat_system_prompt_is_the_published_text() -> None:
    assert len(LLAMA_CHAT_SYSTEM) == 507
    assert (
        hashlib.sha256(LLAMA_CHAT_SYSTEM.encode()).hexdigest()
        == "cda5d1f1710b2195c05075e118c2dc9499e5c5044a45c8cebbbac3d00632bfd4"
    )
    assert LLAMA_CHAT_TEMPLATE.format(system="S", query="Q") == "[INST] <<SYS>>\nS\n<</SYS>>\n\nQ [/INST]"


def test_llama_chat_row_ids_equal_the_reference_encoding(folders: dict, llama_raw: object) -> None:
    from transformers import AutoTokenizer

    name = str(folders["chat"])
    tokenizer = AutoTokenizer.from_pretrained(name)
    spec = model_spec(name)  # a folder named as Llama-2-13b-chat's repository is that model
    assert spec.chat and spec.family == "llama" and spec.context_length == 4096
    assert chat_format(name, tokenizer) == "llama-chat"
    bos, rule = bos_rule(name, tokenizer)
    assert bos is True and "Llama-2-chat" in rule
    text = chat_prompt(QUERY, tokenizer, "llama-chat", bos)
    assert text == REFERENCE_TEXT and "<s>" not in text
    reference = llama_raw.encode(REFERENCE_TEXT).ids
    assert reference[0] == 1 and reference.count(1) == 1
    assert encode_prompts(tokenizer, [text], bos) == [reference]
    assert tokenizer(REFERENCE_TEXT)["input_ids"] == reference  # the reference's own call, this version
    # the chat template's way, its `<s>` dropped for the BOS id: the same ids
    tokenizer.chat_template = LLAMA_JINJA
    assert template_bos(tokenizer)
    messages = [{"role": "system", "content": LLAMA_CHAT_SYSTEM}, {"role": "user", "content": QUERY}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert rendered == "<s>" + REFERENCE_TEXT
    assert encode_prompts(tokenizer, [rendered.removeprefix("<s>")], True) == [reference]


def test_chat_template_ids_with_smollm2s_real_tokenizer() -> None:
    from icalign_nb.models.loading import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m")
    assert chat_format("smollm2-135m", tokenizer) == "template"
    bos, _ = bos_rule("smollm2-135m", tokenizer)
    # `<|im_start|>` is its BOS: the converted tokenizer adds it by default under transformers 4.x, not
    # under 5.x; either way the prompt's ids are the template's
    assert bos is template_bos(tokenizer)
    text = chat_prompt(QUERY, tokenizer, "template", bos)
    assert not text.startswith("<|im_start|>") if bos else text.startswith("<|im_start|>system")
    messages = [{"role": "user", "content": QUERY.strip()}]
    wanted = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    wanted = wanted["input_ids"] if isinstance(wanted, dict) or hasattr(wanted, "keys") else wanted
    assert encode_prompts(tokenizer, [text], bos) == [list(wanted)]


def test_bos_by_family_in_folders_whatever_they_are_called(folders: dict) -> None:
    from transformers import AutoTokenizer

    cases = {"llama": ("llama", False), "gemma": ("gemma", True), "other": ("", True)}
    for key, (family, bos) in cases.items():
        name = str(folders[key])
        tokenizer = AutoTokenizer.from_pretrained(name)
        assert model_family(name, tokenizer) == family, key
        assert bos_rule(name, tokenizer)[0] is bos, key
    llama = AutoTokenizer.from_pretrained(folders["llama"])
    assert llama("x")["input_ids"][0] == 1  # its tokenizer adds BOS; the family rule says none
    gemma = AutoTokenizer.from_pretrained(folders["gemma"])
    assert gemma("x")["input_ids"][0] != gemma.bos_token_id  # it adds none; the family rule says BOS


@pytest.mark.slow
def test_bos_by_family_for_hub_ids_read_offline(folders: dict, tmp_path: Path) -> None:
    """Hub-style names resolved from a local Hugging Face cache (offline): the same rule."""
    cache = tmp_path / "hub"
    names = {"llama": "some-lab/llama-2-7b-clone", "gemma": "some-lab/gemma-clone"}
    for key, repo in names.items():
        snapshot = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True)
        for file in folders[key].iterdir():
            (snapshot / file.name).write_bytes(file.read_bytes())
        (snapshot.parents[1] / "refs").mkdir()
        (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    code = (
        "import json, sys\n"
        "from icalign_nb.models.loading import load_tokenizer\n"
        "from icalign_nb.models.tokens import bos_rule, model_family\n"
        "tokenizers = {n: load_tokenizer(n) for n in sys.argv[1:]}\n"
        "print(json.dumps({n: [model_family(n, t), bos_rule(n, t)[0]] for n, t in tokenizers.items()}))\n"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, *names.values()], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {names["llama"]: ["llama", False], names["gemma"]: ["gemma", True]}


def test_registered_names_and_their_repositories_are_the_same_model(tmp_path: Path) -> None:
    hub = "meta-llama/Llama-2-13b-chat-hf"
    assert model_spec(hub) == replace(REGISTRY["llama-2-13b-chat"], name=hub)
    folder = tmp_path / "Llama-2-13b-hf"
    folder.mkdir()
    spec = model_spec(str(folder))
    assert spec.base and spec.family == "llama" and spec.source == str(folder) and not spec.chat
    assert not model_spec("someone/Llama-2-13b-hf").family  # another repository of that name: read it


def chat_run(folder: Path, backend: str, **kw: object) -> RunSpec:
    return RunSpec(
        model=str(folder),
        backend=backend,
        retrieval=RetrievalSettings(preset="zero-shot", limit=2),
        generation=GenerationConfig(max_new_tokens=3, samples=1),
        **kw,
    )


def test_the_chat_row_on_every_backend(folders: dict, llama_raw: object, tmp_path: Path) -> None:
    # transformers: a real run records the rule and the prompts
    summary = run_generation(
        tmp_path / "t", chat_run(folders["chat"], "transformers"), RunOptions(progress=False)
    )
    assert summary.generated == 2 and summary.shrunk is None
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    assert config["identity"]["bos"] is True and config["chat_form"] == "llama-chat"
    assert "Llama-2-chat" in config["bos_rule"]
    rows = [json.loads(line) for line in (tmp_path / "t" / "retrievals.jsonl").read_text().splitlines()]
    assert all(r["prompt"].startswith("[INST] <<SYS>>\nYou are a helpful") for r in rows)
    # vLLM: the ids handed to the engine are the reference's encoding
    run = resolve_run(chat_run(folders["chat"], "vllm"), RunOptions())
    retrievals = {(r.query_id, None): r for r in build_retrievals(run)[None]}
    requests, _ = build_requests(run, retrievals, [(q, 0) for q, _ in retrievals])
    for request in requests:
        query = retrievals[(request.query_id, None)].query.strip()
        assert request.prompt == LLAMA_CHAT_TEMPLATE.format(system=LLAMA_CHAT_SYSTEM, query=query)
        reference = llama_raw.encode(request.prompt).ids  # the reference's tokenizer(formatted_prompt)
        assert reference[0] == 1 and vb.prompt_input(request)["prompt_token_ids"] == reference
    # an OpenAI-compatible server gets the same ids
    reply = {"choices": [{"text": " ok", "finish_reason": "length"}], "usage": {}}
    with ScriptedServer(lambda body: {**reply, "model": body["model"]}) as server:
        options = RunOptions(base_url=server.url, progress=False)
        run_generation(tmp_path / "o", chat_run(folders["chat"], "openai", served_model="m"), options)
    sent = sorted(tuple(b["prompt"]) for b in server.requests)
    assert sent == sorted(tuple(r.prompt_ids) for r in requests)


def test_server_prompt_ways() -> None:
    req = Request("q", 0, "Question: hi\n\nAnswer:", (), 7, (1, 5, 6))
    config = GenerationConfig()
    assert request_body(req, config, "m", prompt_way="ids")["prompt"] == [1, 5, 6]
    body = request_body(req, config, "m", prompt_way="add_special_tokens", bos=False)
    assert body["prompt"] == req.prompt and body["extra_body"] == {"top_k": 50, "add_special_tokens": False}
    assert "add_special_tokens" not in request_body(req, config, "m", prompt_way="text")["extra_body"]


@pytest.mark.parametrize(("bos", "adds", "said"), [(False, True, True), (False, False, False)])
def test_a_server_taking_only_text_is_said_when_bos_may_differ(
    bos: bool, adds: bool, said: bool, capsys: pytest.CaptureFixture
) -> None:
    seen: list[dict] = []

    def reply(body: dict) -> dict | tuple[int, dict]:
        seen.append(body)
        if not isinstance(body["prompt"], str):
            return 400, {"detail": "prompt must be a string."}
        if "add_special_tokens" in body:
            return 422, {"detail": "Unexpected fields in the request: {'add_special_tokens'}"}
        return completion_reply(" ok", "length")

    with ScriptedServer(reply) as server:
        options = ServerOptions(server.url, "m", bos=bos, tokenizer_adds_bos=adds, concurrency=1)
        requests = [Request(f"q{i}", 0, f"Question: {i}", (), i, (1, 9, i)) for i in range(3)]
        results = [
            r for c in ServerBackend(options).generate(requests, GenerationConfig(top_k=None)) for r in c
        ]
    assert len(results) == 3 and isinstance(seen[0]["prompt"], list)
    assert all(isinstance(b["prompt"], str) and "add_special_tokens" not in b for b in seen[-3:])
    assert any("add_special_tokens" in b for b in seen) is said  # tried only where the default differs
    notes = [line for line in capsys.readouterr().err.splitlines() if "takes neither token ids" in line]
    assert len(notes) == int(said) and (not said or "this run's rule: no BOS" in notes[0])


@pytest.mark.skipif(not __import__("importlib").util.find_spec("vllm"), reason="vLLM is not installed here")
def test_requests_build_with_vllms_own_classes() -> None:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    req = Request("q", 0, "Question: hi", ("\nQuestion:",), 2**40 + 3, (1, 5, 6))
    params = SamplingParams(**vb.sampling_kwargs(req, GenerationConfig(max_new_tokens=9)))
    assert (params.temperature, params.top_p, params.top_k, params.max_tokens) == (0.7, 1.0, 50, 9)
    assert params.seed == req.seed and params.stop == ["\nQuestion:"] and params.skip_special_tokens
    assert TokensPrompt(**vb.prompt_input(req))["prompt_token_ids"] == [1, 5, 6]
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest

    def as_sent(body: dict) -> CompletionRequest:  # the openai client merges extra_body into the JSON
        return CompletionRequest(**{k: v for k, v in body.items() if k != "extra_body"}, **body["extra_body"])

    parsed = as_sent(request_body(req, GenerationConfig(), "m", prompt_way="ids"))
    assert parsed.prompt == [1, 5, 6] and parsed.top_k == 50 and parsed.seed == req.seed % 2**31
    body = request_body(req, GenerationConfig(), "m", prompt_way="add_special_tokens", bos=False)
    assert as_sent(body).prompt == req.prompt and as_sent(body).add_special_tokens is False
    assert CompletionRequest(model="m", prompt="x").add_special_tokens is True  # vLLM adds BOS by default


def test_auto_dtype_by_compute_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    cards = {0: (7, 0), 1: (8, 0)}
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(cards))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda card=0: cards[card])
    assert loading.resolve_dtype("auto", "cuda:1") == "bfloat16"
    assert loading.resolve_dtype("auto", "cuda:0") == "float16"  # a V100: fp16, as the reference
    assert loading.resolve_dtype("auto", "cuda") == "float16"  # a model over both needs bf16 on both
    cards[0] = (9, 0)
    assert loading.resolve_dtype("auto", "cuda") == "bfloat16"
    assert loading.resolve_dtype("float16", "cpu") == "float16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cards[0] = (7, 5)  # a T4 for vLLM
    assert (
        loading.accelerator_dtype("auto") == "float16" and loading.accelerator_dtype("float32") == "float32"
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert loading.accelerator_dtype("auto") == "bfloat16"  # no card visible: the paper's setting


def test_float16_runs_is_recorded_and_refused_on_resume(tmp_path: Path) -> None:
    spec = RunSpec(
        model="tiny-random",
        retrieval=RetrievalSettings(preset="zero-shot", limit=1),
        generation=GenerationConfig(max_new_tokens=4, samples=1),
        dtype="float16",
    )
    summary = run_generation(tmp_path / "run", spec, RunOptions(progress=False))
    assert summary.generated == 1 and summary.backend.dtype == "float16"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["identity"]["dtype"] == "float16"
    with pytest.raises(UserError, match="dtype: 'float16' -> 'float32'"):
        run_generation(tmp_path / "run", replace(spec, dtype="float32"), RunOptions())


def test_answers_run_past_the_context_on_transformers_only(folders: dict) -> None:
    spec = RunSpec(
        model=str(folders["llama"]),
        retrieval=RetrievalSettings(preset="random", limit=1),
        generation=GenerationConfig(max_new_tokens=1000),
    )
    past = resolve_run(spec, RunOptions())
    assert past.past_context and past.prompt_limit == 4096 and past.room == 4096  # llama: no BOS
    fits = resolve_run(replace(spec, backend="vllm"), RunOptions())
    assert not fits.past_context and fits.prompt_limit == 3096 and fits.room == 3096
    gemma = resolve_run(replace(spec, model=str(folders["gemma"]), backend="vllm"), RunOptions())
    assert gemma.spec.bos and gemma.room == gemma.prompt_limit - 1


def test_shrunk_budgets_are_counted_and_said(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """tiny-random's context is 2,048 tokens: a 1,500-token demo budget fits beside a short query, not
    beside 600 tokens of answer room as well."""
    args = ["--model", "tiny-random", "--preset", "random", "--demo-budget", "1500", "--limit", "2"]
    args += ["--samples", "1", "--max-new-tokens", "600", "--no-progress"]
    assert main(["generate", "--run", str(tmp_path / "t"), *args]) == 0
    line = capsys.readouterr().out
    assert "demo budget shrunk to fit the context: 0 queries" in line
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    assert config["context_fit"] == {
        "answers_past_context": True,
        "prompt_limit": 2048,
        "demo_budget_shrunk": 0,
    }
    spec = RunSpec(
        model="tiny-random",
        backend="vllm",
        retrieval=RetrievalSettings(preset="random", demo_budget=1500, limit=2),
        generation=GenerationConfig(max_new_tokens=600, samples=1),
    )
    run = resolve_run(spec, RunOptions())
    retrievals = {(r.query_id, s): r for s, rows in build_retrievals(run).items() for r in rows}
    from icalign_nb.generation.runs import shrunk_queries

    assert shrunk_queries(run, retrievals) == 2 and all(r.budget <= 1448 for r in retrievals.values())


LLAMA_2_13B = {
    "vocab_size": 32000,
    "hidden_size": 5120,
    "intermediate_size": 13824,
    "num_hidden_layers": 40,
    "num_attention_heads": 40,
    "max_position_embeddings": 4096,
}


def test_llama_2_13b_memory_plan_on_one_80gb_card() -> None:
    from transformers import LlamaConfig

    config = LlamaConfig(**LLAMA_2_13B)
    assert memory.weight_bytes(config, "bfloat16") == 2 * 13_015_864_320  # Llama-2-13B's parameters
    assert memory.kv_bytes_per_token(config, "bfloat16") == 819_200
    total = 80 * 2**30
    plan = memory.plan_memory(config, "bfloat16", total - 2**30, total)
    assert plan.budget == int((total - 2**30 - 2 * 13_015_864_320 - 0.1 * total) // 819_200)
    paper_group = 3_100 + 5 * 1_000  # a paper prompt held once, and its 5 samples' answers
    assert 6 <= plan.budget // paper_group <= 8  # about 7 prompts (35 rows) at a time
    assert plan.budget < 131_072  # the CPU default would not fit
    assert "token budget" in plan.describe() and "0.78 MiB" in plan.describe()


def test_cuda_budget_from_free_memory(folders: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    assert memory.cuda_token_budget("tiny-random", "cpu", "auto") is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda card=0: (8, 0))
    free = {0: (10**9, 2 * 10**9), 1: (10**9, 2 * 10**9)}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda card=0: free[card])
    plan = memory.cuda_token_budget(str(folders["llama"]), "cuda", "auto")
    per_token = 2 * 1 * 2 * 8 * 2  # K and V, 1 layer, 2 heads of 8, bf16
    assert plan.per_token == per_token and plan.free == 2 * 10**9 and plan.total == 4 * 10**9
    assert plan.budget == int((2 * 10**9 - plan.weights - 0.4 * 10**9) // per_token)
    free[0] = free[1] = (10**6, 2 * 10**9)
    with pytest.raises(UserError, match="leaves no room for its key/value cache") as err:
        memory.cuda_token_budget(str(folders["llama"]), "cuda", "auto")
    assert "\n" not in str(err.value)
