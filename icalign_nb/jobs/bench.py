"""Benchmarks: the package's paths side by side with reference-style baselines, in one process."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace

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
    """FLOPs of encoding one prompt: every weight but the embeddings once per token, causal attention
    over what each position sees (sliding layers: their window), and the vocabulary for the last token."""
    config = model.config.get_text_config()
    weights = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n)
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    attention = 0
    for kind in types:
        window = config.sliding_window if kind == "sliding_attention" else length
        seen = sum(min(i + 1, window) for i in range(length))
        attention += 2 * 2 * seen * heads * head_dim  # scores and weighted values
    return 2 * weights * length + attention + 2 * config.hidden_size * config.vocab_size


def bench_generation(
    spec: RunSpec,
    batch_size: int | None = None,
    data_dir: str | None = None,
    say: Callable[[str], None] = print,
    token_budget: int | None = None,
) -> float:
    """`icalign bench generation`: reference-style decode vs the package's, same prompts, one process."""
    from ..generation.transformers_backend import TOKEN_BUDGET, TransformersBackend
    from ..generation.types import Request, item_seed
    from ..models.loading import load_model, load_tokenizer
    from ..models.registry import model_spec
    from ..models.tokens import encode_prompts, prompt_bos

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
    backend = TransformersBackend(
        spec.model,
        batch_size,
        device="cpu",
        tokenizer=tokenizer,
        dtype=spec.dtype,
        token_budget=token_budget or TOKEN_BUDGET,
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
        f"{backend.token_budget}; the reference-style one in float32, sdpa, batch 1"
    )
    ref = DecodeStats("reference-style (batch 1, sample to the cap, cut afterwards, float32)")
    reference_style_decode(reference, tokenizer, requests, config.max_new_tokens, ref)
    pkg = DecodeStats(
        f"package (continuous batching, prompt encoded once per query, stop in flight, {backend.dtype})"
    )
    package_decode(backend, requests, config, pkg)
    loop = backend.stats
    peak = matmul_peak(backend.dtype)
    flops = sum(prefill_flops(backend.model, n) for n in lengths)
    achieved = flops / max(loop.prefill_seconds, 1e-9)  # FLOP/s
    for stats in (ref, pkg):
        for line in stats.lines():
            say(line)
    say(
        f"prefill: {loop.prefill_tokens / max(loop.prefill_seconds, 1e-9):.0f} tok/s "
        f"({loop.prefills} prompts, {loop.prefill_tokens} tokens, {loop.prefill_seconds:.2f}s)"
    )
    say(
        f"decode: {loop.steps / max(loop.decode_seconds, 1e-9):.1f} tok/s per row, "
        f"{loop.row_steps / max(loop.decode_seconds, 1e-9):.1f} tok/s in total "
        f"({loop.steps} steps, {loop.row_steps / max(loop.steps, 1):.1f} rows per step on average, "
        f"at most {loop.max_rows})"
    )
    say(
        f"prefill share of the matmul peak: {100 * achieved / peak:.0f}% "
        f"({achieved / 1e9:.0f} GFLOP/s of a measured {backend.dtype} peak of {peak / 1e9:.0f} GFLOP/s, "
        f"2048^3 matmul)"
    )
    speedup = ref.seconds / max(pkg.seconds, 1e-9)
    say(f"speedup: {speedup:.2f}x")
    return speedup
