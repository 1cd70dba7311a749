"""The paged key/value cache: blocks from a pool sized by the budget, reused the moment a row ends,
sliding layers holding only their window, and the memory a run takes against the prediction."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from icalign_nb.generation.kvcache import BLOCK, KVState, LayerInfo, pool_blocks

CPU = torch.device("cpu")


def state(layers: list[int | None], blocks: int = 32, block: int = 8) -> KVState:
    info = [LayerInfo(w, CPU) for w in layers]
    return KVState(info, 2, 1, 4, torch.float32, dict.fromkeys(layers, blocks), block=block)


def test_a_finished_rows_blocks_are_reused_at_once() -> None:
    kv = state([None])
    group = kv.add_prompt(20)  # 3 blocks of 8
    rows = [kv.add_row(group) for _ in range(2)]
    for _ in range(9):  # each row crosses into its second block
        kv.begin_step(rows)
        kv.end_step()
    kind = kv.kinds[None]
    assert kind.held == 3 + 2 * 2 and kind.high() == 7
    mine = list(kind.rows[rows[0]])
    kv.drop_row(rows[0])
    assert kind.held == 3 + 2
    newcomer = kv.add_row(group)
    kv.begin_step([rows[1], newcomer])
    assert kind.rows[newcomer] == [min(mine)]  # the lowest freed block, at the next step
    kv.end_step()
    kv.drop_row(rows[1])
    kv.drop_row(newcomer)
    kv.drop_prompt(group)
    assert kind.held == 0 and kind.high() == 0


def test_sliding_layers_hold_only_their_window() -> None:
    kv = state([None, 12])
    group = kv.add_prompt(50)
    assert len(kv.kinds[12].prompt[group]) == 2 and len(kv.kinds[None].prompt[group]) == 7
    row = kv.add_row(group)
    for _ in range(100):
        kv.begin_step([row])
        kv.end_step()
        assert len(kv.kinds[12].rows[row]) <= 12 // 8 + 2  # a window spans at most this many blocks
    assert len(kv.kinds[None].rows[row]) == 100 // 8 + 1


def test_pool_size_follows_the_budget_and_the_call() -> None:
    # the call needs less than the budget: the pool is what the call can hold at most
    assert pool_blocks(None, 131_072, 32, 256, [3000, 3000], 10) == 2 * 47 + 10 * 4
    # the budget binds: its blocks (admission counts whole blocks)
    many = [3000] * 100
    assert pool_blocks(None, 20_000, 8, 256, many, 100) == 20_000 // BLOCK
    # a prompt longer than the budget still runs alone
    assert pool_blocks(None, 100, 8, 256, [5000], 1) == -(-5000 // BLOCK) + 4
    # a sliding layer: a window per prompt, a window and a block per row
    assert pool_blocks(512, 131_072, 32, 1000, many, 500) == 33 * 8 + 32 * 9


CHILD = r"""
import json, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
from icalign_nb.generation.memory import memory_plan, peak_bytes, reset_peak, rss_bytes
from icalign_nb.generation.transformers_backend import TransformersBackend
from icalign_nb.generation.types import GenerationConfig, Request
from icalign_nb.models.loading import load_tokenizer

budget = int(sys.argv[1])
torch.set_num_threads(1)  # memory does not depend on threads; a busy machine's cores do
tokenizer = load_tokenizer("tiny-random")
torch.manual_seed(0)
config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                     num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096)
model = LlamaForCausalLM(config).eval()
backend = TransformersBackend("tiny-random", model=model, tokenizer=tokenizer, token_budget=budget)
gen = torch.Generator().manual_seed(0)
lengths = [1000 if i % 2 == 0 else 100 for i in range(10)]  # 10x apart, interleaved
requests = [Request(f"q{i}", 0, "", (), i, tuple(torch.randint(3, 40000, (n,), generator=gen).tolist()))
            for i, n in enumerate(lengths)]
generation = GenerationConfig(max_new_tokens=16, samples=1)
before = rss_bytes()
reset_peak()
list(backend.generate(requests, generation, ignore_eos=True))
plan = memory_plan(model, backend.layers, budget, backend.max_rows, 16, lengths, len(requests))
stats = backend.stats
print(json.dumps({"growth": peak_bytes() - before, "kv_peak": stats.kv_peak_bytes,
                  "pool": stats.kv_pool_bytes, "activations": plan.activations, "rows": stats.max_rows,
                  "tokens": stats.kv_peak_tokens[None]}))
"""


def run_child(budget: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(budget)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the resident high-water mark")
def test_the_budget_bounds_memory_with_prompts_ten_times_apart() -> None:
    """Prompts of 1,000 and 100 tokens under a tight and a loose budget, each in a fresh process: the
    blocks held stay within the budget, and the peak resident growth during generation stays within
    20% of the prediction (key/value pool + largest prefill) and grows with the budget."""
    tight, loose = run_child(3_000), run_child(20_000)
    for budget, got in ((3_000, tight), (20_000, loose)):
        assert got["tokens"] <= budget
        assert got["kv_peak"] <= got["growth"] <= 1.2 * (got["pool"] + got["activations"])
    assert tight["rows"] < loose["rows"] and tight["kv_peak"] < loose["kv_peak"]
    assert tight["growth"] < loose["growth"]


def test_each_layer_keeps_its_cache_on_its_own_device() -> None:
    """A model split over devices (`device_map="auto"`): each layer's blocks live on that layer's
    device and a step's masks and indices go to each device once. Here the second layer sits on the
    `meta` device, which refuses to mix with CPU tensors in the operations a step runs."""
    devices = [CPU, torch.device("meta"), CPU]
    layers = [None, 8, None]
    kv = KVState(
        [LayerInfo(w, d) for w, d in zip(layers, devices, strict=True)],
        4,
        2,
        16,
        torch.float32,
        dict.fromkeys(layers, 16),
        block=8,
    )
    assert [k.device for k in kv.keys] == [v.device for v in kv.values] == devices
    group = kv.add_prompt(20)
    kv.begin_prefill(group)
    for layer, device in enumerate(devices):
        q, k = torch.randn(1, 4, 20, 16, device=device), torch.randn(1, 2, 20, 16, device=device)
        assert kv.attend(layer, q, k, k, 0.25).device == device
    kv.end_prefill()
    rows = [kv.add_row(group), kv.add_row(group)]
    for _ in range(10):  # across a block boundary: new blocks zeroed on their own device
        kv.begin_step(rows)
        for layer, device in enumerate(devices):
            q, k = torch.randn(2, 4, 1, 16, device=device), torch.randn(2, 2, 1, 16, device=device)
            assert kv.attend(layer, q, k, k, 0.25).device == device
        kv.end_step()


def test_the_probe_reads_each_layers_window_and_device(tiny_tokenizer) -> None:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from icalign_nb.generation.attention import NAME, probe_layers, register

    register()
    config = Gemma3TextConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=16,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
    )
    model = Gemma3ForCausalLM(config).eval()
    model.set_attn_implementation(NAME)
    assert probe_layers(model) == [LayerInfo(16, CPU), LayerInfo(None, CPU), LayerInfo(16, CPU)]


def test_a_gpu_pool_is_cut_to_the_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA the pool is allocated whole: sized past the free memory it shrinks (the full-attention
    pool, sliding ones no larger than it), and fits; the CPU's is left as the budget says."""
    from icalign_nb.generation.kvcache import fit_devices

    gpu = torch.device("cuda", 0)
    layers = [LayerInfo(None, gpu), LayerInfo(512, gpu), LayerInfo(None, CPU)]
    per_block = 2 * 8 * BLOCK * 128 * 2  # kv heads 8, head dim 128, bf16
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (100 * per_block + 10, 0))
    wanted = {None: 300, 512: 40}
    got = fit_devices(wanted, layers, 8, 128, torch.bfloat16, reserve=10)
    assert got == {None: 60, 512: 40}  # 60 + 40 blocks on the GPU
    assert fit_devices({None: 50, 512: 40}, layers, 8, 128, torch.bfloat16, reserve=10) == {None: 50, 512: 40}
    assert fit_devices(wanted, [LayerInfo(None, CPU)], 8, 128, torch.bfloat16, reserve=10) == wanted
