"""Benchmarks: the package's paths side by side with reference-style baselines, in one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..generation.runs import RunSpec
from ..models.loading import context_length
from ..retrieval import prompts
from ..retrieval.settings import RetrievalSettings, build_retriever, load_queries


@contextmanager
def _timed(times: dict[str, float], stage: str) -> object:
    """Add the wall time of a block to `times[stage]`."""
    start = time.perf_counter()
    yield
    times[stage] = times.get(stage, 0.0) + time.perf_counter() - start


def reference_style_retrieval(
    retriever: object, queries: list[str], times: dict[str, float], batch_size: int = 64
) -> list[list[str]]:
    """The reference code's path: embed the pool in file order, then per query encode, sort, re-tokenise."""
    import torch

    enc, pool, config = retriever.encoder, retriever.pool, retriever.config
    with _timed(times, "embed pool"):
        texts = pool["prompt"].to_list()
        emb = torch.from_numpy(
            np.concatenate(
                [enc.encode_unsorted(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
            )
        )
    ids, prompts_, responses = pool["id"].to_list(), texts, pool["response"].to_list()
    chosen = []
    for query in queries:
        with _timed(times, "encode queries"):
            q = torch.from_numpy(enc.encode_unsorted([query]))
        with _timed(times, "select + pack"):
            scores = emb.matmul(q.T)
            order = torch.argsort(scores, dim=0, descending=True)[: config.max_k].squeeze(-1).tolist()
            kept, total = [], 0
            for idx in order:
                text = prompts.demo_budget_text(prompts_[idx], responses[idx])
                n = len(retriever.tokenizer(text, add_special_tokens=False).input_ids)
                if n > config.max_demo_tokens:
                    continue
                total += n
                if total > config.demo_budget:
                    break
                kept.append(ids[idx])
            chosen.append(list(reversed(kept)))
    return chosen


def package_retrieval(
    retriever: object, query_ids: list[str], queries: list[str], times: dict[str, float]
) -> list[list[str]]:
    """The package's path: cached pool embeddings, batched query encoding, one top-k, cached lengths."""
    from ..retrieval.embeddings import embed_pool

    with _timed(times, "embed pool"):
        embed_pool(retriever.pool, retriever.encoder)  # warm cache: a read
    with _timed(times, "encode queries"):
        q = retriever.encode_queries(queries)
    with _timed(times, "select + pack"):
        top, scores = retriever.rank(q)
        out = retriever.assemble(
            query_ids, queries, top, scores, [retriever.config.demo_budget] * len(queries)
        )
    return [r.demo_ids for r in out]


def _report(
    title: str, stages: list[str], ref: dict[str, float], pkg: dict[str, float], say: Callable[[str], None]
) -> float:
    """Print stage times side by side and return the end-to-end speedup."""
    say(f"{title}\n{'stage':<16}{'reference (s)':>15}{'package (s)':>14}{'ratio':>9}")
    for stage in [*stages, "total"]:
        r = sum(ref.values()) if stage == "total" else ref.get(stage, 0.0)
        p = sum(pkg.values()) if stage == "total" else pkg.get(stage, 0.0)
        say(f"{stage:<16}{r:>15.3f}{p:>14.3f}{r / max(p, 1e-9):>8.1f}x")
    return sum(ref.values()) / max(sum(pkg.values()), 1e-9)


def bench_retrieval(
    settings: RetrievalSettings, data_dir: str | None = None, say: Callable[[str], None] = print
) -> float:
    """`icalign bench retrieval`: reference-style vs package retrieval on the same inputs; the speedup."""
    queries = load_queries(settings, data_dir)
    retriever = build_retriever(settings, data_dir)  # loads models and warms the package's caches (not timed)
    retriever.demo_lengths()
    qids, texts = queries["id"].to_list(), queries["prompt"].to_list()
    say(
        f"pool {settings.pool}: {retriever.pool.height} demos; {len(texts)} queries; "
        f"encoder {settings.encoder}; tokenizer {settings.tokenizer_name()}"
    )
    ref_t: dict[str, float] = {}
    pkg_t: dict[str, float] = {}
    ref = reference_style_retrieval(retriever, texts, ref_t)
    pkg = package_retrieval(retriever, qids, texts, pkg_t)
    differ = [qid for qid, a, b in zip(qids, ref, pkg, strict=True) if a != b]
    if differ:
        raise UserError(
            f"the two paths selected different demos for {len(differ)} queries (first: {differ[0]})"
        )
    say(f"same demos selected for all {len(qids)} queries (mean kept {np.mean([len(c) for c in pkg]):.1f})")
    stages = ["embed pool", "encode queries", "select + pack"]
    speedup = _report("wall time by stage", stages, ref_t, pkg_t, say)
    say(f"selection + packing alone: {ref_t['select + pack'] / max(pkg_t['select + pack'], 1e-9):.1f}x")
    say(f"speedup: {speedup:.1f}x")
    return speedup


@dataclass
class DecodeStats:
    """What one decoding path spent and kept."""

    name: str
    seconds: float = 0.0
    answers: int = 0
    decoded: int = 0  # new tokens the model produced for the answers
    kept: int = 0  # tokens of the saved answers

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        per = max(self.answers, 1)
        rate = self.decoded / max(self.seconds, 1e-9)
        return [
            f"{self.name}: {self.answers} answers in {self.seconds:.3f}s",
            f"  decoded tokens per kept answer: {self.decoded / per:.1f} "
            f"(kept tokens per answer: {self.kept / per:.1f}; "
            f"ratio {self.decoded / max(self.kept, 1):.2f}x); {rate:.1f} tok/s",
        ]


def reference_style_decode(
    model: object, tokenizer: object, requests: list, max_new_tokens: int, stats: DecodeStats
) -> list[str]:
    """The reference code's decode: one prompt at a time, sample to the cap, cut at the stop afterwards."""
    import torch

    answers = []
    for req in requests:
        start = time.perf_counter()
        ids = torch.tensor([list(req.prompt_ids)], device=model.device)
        torch.manual_seed(req.seed % (2**31))
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=0.7,
                top_p=1.0,
                top_k=50,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[0, ids.shape[1] :].tolist()
        answer, _ = prompts.clean_answer(tokenizer.decode(new, skip_special_tokens=True), req.stop)
        stats.seconds += time.perf_counter() - start
        stats.decoded += len(new)
        stats.kept += len(tokenizer(answer, add_special_tokens=False)["input_ids"])
        stats.answers += 1
        answers.append(answer)
    return answers


def package_decode(backend: object, requests: list, config: object, stats: DecodeStats) -> list[str]:
    """The package's decode: continuous batching, shared prompt encodings, stop strings in flight."""
    answers = {}
    start = time.perf_counter()
    for results in backend.generate(requests, config):
        for r in results:
            stats.decoded += r.n_generated_tokens
            stats.kept += len(backend.tokenizer(r.response, add_special_tokens=False)["input_ids"])
            answers[r.request.key] = r.response
    stats.seconds += time.perf_counter() - start
    stats.answers += len(answers)
    return [answers[r.key] for r in requests]


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    """The shortest wall time of `repeats` calls (after one untimed call)."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def read_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """Memory read bandwidth in bytes/s: the best of `repeats` sums of a bf16 tensor of `megabytes`."""
    import torch

    x = torch.ones(megabytes * 2**20 // 2, dtype=torch.bfloat16)
    return x.numel() * 2 / best_seconds(x.sum, repeats)


def decode_products(backend: object) -> list[tuple[object, object]]:
    """The linear products a decode step runs once each per row (the LM head included), in order, each
    layer with what the step calls on it: the lean decoder's (its fused layers, the built kernels' products
    where it uses them), else every linear layer of the model and its own forward."""
    import torch

    from ..generation.quantize import QuantLinear

    if getattr(backend, "decoder", None) is not None:
        return backend.decoder.products()
    return [(m, m) for m in backend.model.modules() if isinstance(m, torch.nn.Linear | QuantLinear)]


def matvec_bound(backend: object, repeats: int = 5) -> tuple[float, int, int]:
    """(seconds, weight bytes, products) of one decode step's matrix-vector products alone: each product
    the step runs applied once to one token, in order, as the step calls it (bf16, float32, int8 or int4
    weights; on all threads); the best of `repeats` passes (each reads every weight from memory)."""
    import torch

    from ..generation.decoder import weight_bytes

    products = decode_products(backend)
    dtype = next(p for p in backend.model.parameters() if p.is_floating_point()).dtype
    inputs = {m.in_features: torch.randn(1, m.in_features, dtype=dtype) for m, _ in products}
    weights = sum(weight_bytes(m) for m, _ in products)

    def one_pass() -> None:
        with torch.inference_mode():
            for m, product in products:
                product(inputs[m.in_features])

    return best_seconds(one_pass, repeats), weights, len(products)


def matmul_peak(dtype: str, size: int = 2048, repeats: int = 10) -> float:
    """This machine's matmul peak in FLOP/s for a dtype: the best of `repeats` size^3 products."""
    import torch

    kind = getattr(torch, dtype)
    a, b = torch.randn(size, size, dtype=kind), torch.randn(size, size, dtype=kind)
    torch.matmul(a, b)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times)


def prefill_flops(model: object, length: int) -> float:
    """FLOPs of encoding one prompt: every linear layer's weights but the LM head's once per token
    (counted by shape, so quantised layers, whose weights are buffers, count alike), causal attention
    over what each position sees (sliding layers: their window), and the vocabulary for the last token."""
    import torch

    from ..generation.quantize import QuantLinear

    config = model.config.get_text_config()
    weights = sum(
        m.in_features * m.out_features
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear | QuantLinear) and "lm_head" not in n
    )
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    attention = 0
    for kind in types:
        window = config.sliding_window if kind == "sliding_attention" else length
        seen = sum(min(i + 1, window) for i in range(length))
        attention += 2 * 2 * seen * heads * head_dim  # scores and weighted values
    return 2 * weights * length + attention + 2 * config.hidden_size * config.vocab_size


def attention_path(backend: object) -> str:
    """How the package's decode steps attend: in the built kernel, or in torch's products."""
    return "in the built kernel" if backend.kernels is not None else "in torch"


def compute_dtype(model: object) -> str:
    """The dtype activations run in (an int8-weight model computes in its other weights' dtype)."""
    return str(next(p for p in model.parameters() if p.is_floating_point()).dtype).removeprefix("torch.")


def bench_generation(
    spec: RunSpec,
    batch_size: int | None = None,
    data_dir: str | None = None,
    say: Callable[[str], None] = print,
    token_budget: int | None = None,
    peer: str | None = None,
) -> float:
    """`icalign bench generation`: reference-style decode vs the package's, same prompts, one process;
    then what the hardware allows (bandwidth, matrix-vector bound, matmul peak), the package's memory
    against its prediction (a subprocess) and, with `peer`, llama.cpp on the same GGUF."""
    from ..generation.transformers_backend import TOKEN_BUDGET, TransformersBackend
    from ..generation.types import Request, item_seed
    from ..models.loading import load_model, load_tokenizer
    from ..models.registry import model_spec
    from ..models.tokens import encode_prompts, prompt_bos

    if peer not in (None, "llama-cpp"):
        raise UserError(f"unknown peer '{peer}'; peers: llama-cpp")
    config = spec.generation
    tokenizer = load_tokenizer(spec.model)
    bos = prompt_bos(spec.model, tokenizer)
    context = context_length(spec.model)
    queries = load_queries(spec.retrieval, data_dir)
    retrievals = build_retriever(spec.retrieval, data_dir, tokenizer=tokenizer).retrieve(
        queries, context_limit=context - config.max_new_tokens - int(bos)
    )
    ids = encode_prompts(tokenizer, [r.prompt for r in retrievals], bos)
    requests = [
        Request(r.query_id, s, r.prompt, tuple(r.stop), item_seed(config.seed, r.query_id, s), tuple(p))
        for r, p in zip(retrievals, ids, strict=True)
        for s in range(config.samples)
    ]
    reference = load_model(spec.model, device="cpu", dtype="float32")  # the reference code's sdpa path
    budget = token_budget or TOKEN_BUDGET
    backend = TransformersBackend(
        spec.model, batch_size, device="cpu", tokenizer=tokenizer, dtype=spec.dtype, token_budget=budget
    )
    warm = replace(config, max_new_tokens=2, samples=1)
    backend.generate_batch(requests[:1], warm)  # warm-up (pages weights in, builds kernels): not timed
    reference_style_decode(reference, tokenizer, requests[:1], 2, DecodeStats("warm-up"))
    lengths = [len(p) for p in ids]
    chat = (
        " (a chat model: here it decodes paper-preset prompts as a workload)"
        if model_spec(spec.model).chat
        else ""
    )
    say(
        f"model {spec.model}{chat}, preset {spec.retrieval.preset}, {len(retrievals)} queries x "
        f"{config.samples} samples from '{spec.retrieval.eval}' (pool '{spec.retrieval.pool}', mean prompt "
        f"{sum(lengths) / len(lengths):.0f} tokens, BOS {'yes' if bos else 'no'}), "
        f"max_new_tokens {config.max_new_tokens}"
    )
    say(
        f"paths: the package's in {backend.dtype}, rows <= {backend.max_rows}, token budget "
        f"{backend.token_budget}, decode attention {attention_path(backend)}; the reference-style one in "
        "float32, sdpa, batch 1"
    )
    ref = DecodeStats("reference-style (batch 1, sample to the cap, cut afterwards, float32)")
    reference_style_decode(reference, tokenizer, requests, config.max_new_tokens, ref)
    pkg = DecodeStats(
        f"package (continuous batching, prompt encoded once per query, stop in flight, {backend.dtype})"
    )
    package_decode(backend, requests, config, pkg)
    loop = backend.stats
    del reference
    for stats in (ref, pkg):
        for line in stats.lines():
            say(line)
    say(
        f"prefill: {loop.prefill_tokens / max(loop.prefill_seconds, 1e-9):.0f} tok/s "
        f"({loop.prefills} prompts, {loop.prefill_tokens} tokens, {loop.prefill_seconds:.2f}s)"
    )
    per_row = loop.steps / max(loop.decode_seconds, 1e-9)
    say(
        f"decode: {per_row:.1f} tok/s per row, "
        f"{loop.row_steps / max(loop.decode_seconds, 1e-9):.1f} tok/s in total "
        f"({loop.steps} steps, {loop.row_steps / max(loop.steps, 1):.1f} rows per step on average, "
        f"at most {loop.max_rows})"
    )
    compute = compute_dtype(backend.model)
    bandwidth = read_bandwidth()
    seconds, weight_bytes, products = matvec_bound(backend)
    say(f"memory read bandwidth: {bandwidth / 1e9:.1f} GB/s (best sum of a 256 MB bf16 tensor)")
    say(
        f"matrix-vector: one decode step's {products} products on the model's own weights "
        f"({weight_bytes / 1e6:.0f} MB, {backend.dtype}) take {1e3 * seconds:.3f} ms, "
        f"{weight_bytes / seconds / 1e9:.1f} GB/s"
    )
    say(
        f"bound: {1 / seconds:.1f} tok/s per row at batch 1 (one step's matrix-vector products alone); "
        f"decode per row at {100 * per_row * seconds:.0f}% of it"
    )
    peak = matmul_peak(compute)
    flops = sum(prefill_flops(backend.model, n) for n in lengths)
    achieved = flops / max(loop.prefill_seconds, 1e-9)  # FLOP/s
    say(
        f"prefill share of the matmul peak: {100 * achieved / peak:.0f}% "
        f"({achieved / 1e9:.0f} GFLOP/s of a measured {compute} peak of {peak / 1e9:.0f} GFLOP/s, "
        f"2048^3 matmul)"
    )
    for line in memory_report(spec, backend, requests, config):
        say(line)
    if peer:
        for line in peer_report(spec.model, backend, requests[0], min(128, config.max_new_tokens)):
            say(line)
    speedup = ref.seconds / max(pkg.seconds, 1e-9)
    say(f"speedup: {speedup:.2f}x")
    return speedup


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def memory_report(spec: RunSpec, backend: object, requests: list, config: object) -> list[str]:
    """Lines on the package's path alone: run in a fresh process, its peak resident memory during
    generation against the prediction (runtime + weights + key/value storage + largest prefill)."""
    job = {
        "model": spec.model,
        "dtype": spec.dtype,
        "batch_size": backend.max_rows,
        "token_budget": backend.token_budget,
        "config": config.to_json(),
        "requests": [[*r.key, r.prompt, list(r.stop), r.seed, list(r.prompt_ids)] for r in requests],
    }
    got = in_child("memory_child", job, "the memory measurement's")
    if got["peak"] is None:
        return ["memory: this system does not report a resident high-water mark; not measured"]
    base = got["loaded"] + got["activations"]
    at_pool, at_held = base + got["kv_pool"], base + got["kv_peak"]
    return [
        f"memory (the package's path alone, a fresh process): peak {_mb(got['peak'])} resident during "
        f"generation; predicted {_mb(at_pool)} = resident after loading {_mb(got['loaded'])} (runtime "
        f"{_mb(got['runtime'])} + weights {_mb(got['weights'])} + tokenizer and the rest) + key/value pool "
        f"{_mb(got['kv_pool'])} (the budget's {backend.token_budget:,} tokens, capped by what the call's "
        f"prompts and rows can hold) + largest prefill {_mb(got['activations'])}",
        f"memory: peak / predicted {got['peak'] / at_pool:.2f}; key/value held at most "
        f"{_mb(got['kv_peak'])} (predicted with that: {_mb(at_held)}, peak / that "
        f"{got['peak'] / at_held:.2f})",
    ]


def memory_child() -> None:
    """The memory measurement's process: read a job (JSON on stdin), run it, print what it took."""
    import torch  # noqa: F401  (the runtime is measured with torch and transformers loaded)
    import transformers  # noqa: F401

    from ..generation.attention import probe_layers
    from ..generation.memory import memory_plan, peak_bytes, reset_peak, rss_bytes
    from ..generation.transformers_backend import TransformersBackend
    from ..generation.types import GenerationConfig, Request

    job = json.loads(sys.stdin.read())
    runtime = rss_bytes()
    backend = TransformersBackend(
        job["model"], job["batch_size"], device="cpu", dtype=job["dtype"], token_budget=job["token_budget"]
    )
    loaded = rss_bytes()
    requests = [
        Request(q, s, p, tuple(stop), seed, tuple(ids)) for q, s, p, stop, seed, ids in job["requests"]
    ]
    config = GenerationConfig(**job["config"])
    lengths = list({r.prompt_ids: len(r.prompt_ids) for r in requests}.values())
    plan = memory_plan(
        backend.model,
        probe_layers(backend.model),
        backend.token_budget,
        backend.max_rows,
        config.max_new_tokens,
        lengths,
        len(requests),
    )
    measured = reset_peak()
    for _ in backend.generate(requests, config):
        pass
    result = {
        "runtime": runtime,
        "loaded": loaded,
        "peak": peak_bytes() if measured else None,
        "weights": plan.weights,
        "activations": plan.activations,
        "kv_pool": backend.stats.kv_pool_bytes,
        "kv_peak": backend.stats.kv_peak_bytes,
    }
    print(json.dumps(result))


def peer_report(model_name: str, backend: object, request: object, new_tokens: int) -> list[str]:
    """llama.cpp (llama-cpp-python) and the package, batch 1, on one prompt: prefill and decode tok/s."""
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        return [
            "peer llama.cpp: llama-cpp-python is not installed (build it from source: "
            "CMAKE_ARGS=-DGGML_NATIVE=ON pip install --no-binary llama-cpp-python llama-cpp-python)"
        ]
    import torch

    from ..generation.types import GenerationConfig
    from ..models.builds import gguf_file

    ids = list(request.prompt_ids)
    with tempfile.TemporaryDirectory() as tmp:
        path = gguf_file(model_name, Path(tmp))
        if path is None:
            return [f"peer llama.cpp: '{model_name}' does not come from a GGUF file; not timed"]
        peer = llama_peer(path, ids, new_tokens, torch.get_num_threads())
    greedy = GenerationConfig(max_new_tokens=new_tokens + 1, samples=1, temperature=0)
    backend.generate_batch([request], replace(greedy, max_new_tokens=2))  # warm-up
    mine = (0.0, 0.0)
    for _ in range(2):  # the better of two runs, as for llama.cpp
        list(backend.generate([replace(request, sample=0)], greedy, ignore_eos=True))
        loop = backend.stats
        rates = (loop.prefill_tokens / loop.prefill_seconds, loop.steps / loop.decode_seconds)
        mine = (max(mine[0], rates[0]), max(mine[1], rates[1]))
    wait = os.environ.get("OMP_WAIT_POLICY", "unset")
    version = importlib.metadata.version("llama-cpp-python")
    return [
        f"peer llama.cpp (llama-cpp-python {version}, {path.name}, "
        f"{torch.get_num_threads()} threads, OMP_WAIT_POLICY {wait}): prefill {peer[0]:.0f} tok/s, decode "
        f"{peer[1]:.1f} tok/s at batch 1 ({len(ids)}-token prompt, {new_tokens} greedy tokens; llama.cpp's "
        "own timings)",
        f"package, same prompt ({backend.dtype}): prefill {mine[0]:.0f} tok/s ({mine[0] / peer[0]:.2f}x "
        f"llama.cpp's), decode {mine[1]:.1f} tok/s at batch 1 ({mine[1] / peer[1]:.2f}x llama.cpp's)",
    ]


def llama_peer(path: Path, ids: list[int], new_tokens: int, threads: int) -> tuple[float, float]:
    """(prefill tok/s, decode tok/s) of llama.cpp in a process of its own (no torch threads beside it):
    the prompt evaluated at once, then greedy tokens one at a time; llama.cpp's own performance
    counters, the better of two runs."""
    job = {"path": str(path), "ids": ids, "new_tokens": new_tokens, "threads": threads}
    prefill, decode = in_child("llama_peer_child", job, "llama.cpp's timing")
    return prefill, decode


def in_child(function: str, job: dict, what: str) -> object:
    """Run `function` of this module in a fresh process, `job` on its stdin as JSON; the JSON of its last
    line of output. A failure is one line: `what` process failed, and its last line of stderr."""
    child = subprocess.run(
        [sys.executable, "-c", f"from icalign_nb.jobs.bench import {function}; {function}()"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        last = (child.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"{what} process failed: {last}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def llama_peer_child() -> None:
    """llama.cpp's timing process: read a job (JSON on stdin), print [prefill, decode] tok/s."""
    import llama_cpp
    import numpy as np

    job = json.loads(sys.stdin.read())
    ids, new_tokens, threads = job["ids"], job["new_tokens"], job["threads"]
    llm = llama_cpp.Llama(
        model_path=job["path"],
        n_ctx=len(ids) + new_tokens + 16,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    vocab = llm.n_vocab()
    best = [0.0, 0.0]
    for _ in range(2):
        llm.reset()
        llama_cpp.llama_perf_context_reset(llm.ctx)
        llm.eval(ids)
        for _ in range(new_tokens):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(vocab,))
            llm.eval([int(np.argmax(logits))])
        perf = llama_cpp.llama_perf_context(llm.ctx)
        best = [
            max(best[0], 1e3 * perf.n_p_eval / perf.t_p_eval_ms),
            max(best[1], 1e3 * perf.n_eval / perf.t_eval_ms),
        ]
    llm.close()
    print(json.dumps(best))


def _greedy_run(backend: object, requests: list, new_tokens: int) -> dict:
    """Greedy answers through the decode loop: per query, its tokens and each step's top-2 margin."""
    from ..generation.types import GenerationConfig

    seen: dict = {r.key: ([], []) for r in requests}

    def record(events: list) -> None:
        for e in events:
            if e.token is not None:
                top2 = e.logits.topk(2).values
                seen[e.request.key][0].append(e.token)
                seen[e.request.key][1].append(float(top2[0] - top2[1]))

    config = GenerationConfig(max_new_tokens=new_tokens, samples=1, temperature=0)
    list(backend.generate(requests, config, on_tokens=record, ignore_eos=True))
    return seen


def _forced_logits(model: object, prompt: tuple[int, ...], tokens: list[int]) -> object:
    """Float32 logits of every step of `tokens` after `prompt`, teacher-forced in one forward pass."""
    import torch

    ids = torch.tensor([[*prompt, *tokens[:-1]]], device=model.device)
    with torch.inference_mode():
        return model(input_ids=ids, logits_to_keep=len(tokens), use_cache=False).logits[0].float()


def bench_precision(
    spec: RunSpec,
    dtypes: list[str],
    data_dir: str | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, dict]:
    """`icalign bench precision`: each dtype against float32 (and int8, int4 against bfloat16) on paper-preset
    prompts: the largest logit difference at every step teacher-forced on float32's greedy answer, and
    whether the greedy answers themselves diverge (and where, against float32's top-2 margin there)."""
    from ..generation.transformers_backend import TransformersBackend
    from ..generation.types import Request
    from ..models.loading import load_tokenizer
    from ..models.tokens import encode_prompts, prompt_bos

    new_tokens = spec.generation.max_new_tokens
    tokenizer = load_tokenizer(spec.model)
    bos = prompt_bos(spec.model, tokenizer)
    queries = load_queries(spec.retrieval, data_dir)
    retrievals = build_retriever(spec.retrieval, data_dir, tokenizer=tokenizer).retrieve(
        queries, context_limit=context_length(spec.model) - new_tokens - int(bos)
    )
    ids = encode_prompts(tokenizer, [r.prompt for r in retrievals], bos)
    requests = [
        Request(r.query_id, 0, r.prompt, (), 0, tuple(p)) for r, p in zip(retrievals, ids, strict=True)
    ]
    lengths = [len(p) for p in ids]
    say(
        f"model {spec.model}, preset {spec.retrieval.preset}: {len(requests)} prompts of {min(lengths)}-"
        f"{max(lengths)} tokens, {new_tokens} greedy tokens each (eos ignored)"
    )
    runs, models = {}, {}
    for dtype in ["float32", *dtypes]:
        backend = TransformersBackend(spec.model, device="cpu", tokenizer=tokenizer, dtype=dtype)
        runs[dtype], models[dtype] = _greedy_run(backend, requests, new_tokens), backend.model
    pairs = [(d, "float32") for d in dtypes]
    if "bfloat16" in dtypes:
        pairs += [(d, "bfloat16") for d in dtypes if d in ("int8", "int4")]
    summary = {}
    for dtype, against in pairs:
        worst, per_step, same, diverged = 0.0, [], 0, []
        for req in requests:
            tokens, margins = runs[against][req.key]
            diff = (
                (
                    _forced_logits(models[dtype], req.prompt_ids, tokens)
                    - _forced_logits(models[against], req.prompt_ids, tokens)
                )
                .abs()
                .amax(-1)
            )
            per_step += diff.tolist()
            worst = max(worst, float(diff.max()))
            mine = runs[dtype][req.key][0]
            step = next((i for i, (a, b) in enumerate(zip(tokens, mine, strict=True)) if a != b), None)
            if step is None:
                same += 1
            else:
                diverged.append((step, margins[step]))
        per_step.sort()
        near = sum(m <= worst for _, m in diverged)
        median = per_step[len(per_step) // 2]
        say(
            f"{dtype} vs {against}: largest logit difference {worst:.3f} (median step {median:.3f}, "
            f"{len(per_step)} steps teacher-forced on {against}'s greedy answers); greedy answers "
            f"identical for {same}/{len(requests)}"
            + (
                f"; the others diverge at steps {', '.join(str(s) for s, _ in sorted(diverged))} "
                f"({near} where {against}'s top-2 margin was within the largest difference)"
                if diverged
                else ""
            )
        )
        summary[f"{dtype} vs {against}"] = {"largest": worst, "identical": same, "diverged": diverged}
    return summary
