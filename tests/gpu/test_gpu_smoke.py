"""GPU smoke test of the transformers backend's decode loop, ready for its first GPU.

What it assumes: torch (a CUDA build), transformers, and this package importable (`pip install -e .`
from the repository, or PYTHONPATH=<repository>); no network, no tokenizer files (token ids only),
no vLLM, no Llama-2 weights, no polars, pytest optional. Every model is built here with random
weights: a tiny Llama, and a Llama of Llama-2-13B's shape in bf16 on the GPU.

    python tests/gpu/test_gpu_smoke.py --out gpu-smoke.json    # on the GPU machine, < 10 min on one H100
    python -m pytest tests/gpu                                  # the same, skipped without CUDA;
                                                                # and a CPU dry run with small shapes

Steps, each written to the JSON file as soon as it ends: the environment and compute capability;
greedy decoding (48 tokens, prompts of 5-1,500 tokens, rows refilled) token for token against
`model.generate(do_sample=False)` in float32 with TF32 off, and every step's logits against a full
SDPA forward (< 1e-4); the same in bf16 (reported, not required); seeded sampling identical
whatever the batch size (float32); the 13B shape at 8 prompts of 3,096 tokens x 5 samples x 1,000
new tokens, eos ignored: out of memory or not, peak memory, prefill and decode speed, position
4,095 reached.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

try:
    import pytest
except ImportError:  # the GPU machine may have no pytest: the script runs without it
    pytest = None

LOGIT_TOL = 1e-4


@dataclass(frozen=True)
class Shapes:
    """How big each step is: the GPU run's, or the CPU dry run's."""

    lengths: tuple[int, ...] = (5, 17, 64, 200, 513, 777, 1024, 1500)
    new_tokens: int = 48
    max_rows: int = 3  # fewer rows than prompts: rows leave and queued ones take their place
    big: dict | None = None  # the large model's config (None: Llama-2-13B's shape)
    big_prompts: int = 8
    big_length: int = 3096
    big_samples: int = 5
    big_new: int = 1000


DRY_RUN = Shapes(
    lengths=(5, 17, 40, 130),
    new_tokens=12,
    max_rows=2,
    big={
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
    },
    big_prompts=2,
    big_length=96,
    big_samples=2,
    big_new=32,
)


class IdTokenizer:
    """What the backend asks of a tokenizer, over token ids alone (no tokenizer files here)."""

    bos_token_id = None
    pad_token_id = 0

    def __init__(self, eos: int) -> None:
        self.eos_token_id = eos

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": [len(text)]}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return " ".join(str(i) for i in ids)


class Report:
    """The results so far, rewritten to the JSON file after every step."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.data = path, {"steps": {}}

    def step(self, name: str, result: dict) -> None:
        self.data["steps"][name] = result
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=2))
            tmp.replace(self.path)


def tiny_llama(device: str, dtype: torch.dtype, config: dict | None = None) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    settings = {
        "vocab_size": 32000,
        "hidden_size": 256,
        "intermediate_size": 688,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "eos_token_id": 2,
        "bos_token_id": 1,
        "pad_token_id": 0,
        **(config or {}),
    }
    return LlamaForCausalLM(LlamaConfig(**settings)).to(device=device, dtype=dtype).eval()


def backend_for(model: torch.nn.Module, max_rows: int) -> object:
    from icalign_nb.generation.transformers_backend import TransformersBackend

    eos = model.config.eos_token_id
    return TransformersBackend(
        "local/random-llama", model=model, tokenizer=IdTokenizer(eos), batch_size=max_rows
    )


def prompts(lengths: tuple[int, ...], vocab: int, seed: int = 0) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in lengths]


def environment() -> dict:
    import transformers

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            device=props.name,
            compute_capability=f"{props.major}.{props.minor}",
            memory_gb=round(props.total_memory / 1e9, 1),
            devices=torch.cuda.device_count(),
            bf16=torch.cuda.is_bf16_supported(),
            cuda_version=torch.version.cuda,
        )
    return info


def greedy_against_reference(model: torch.nn.Module, shapes: Shapes, strict: bool) -> dict:
    """Greedy through the decode loop (rows refilled) vs `model.generate` and a full SDPA forward."""
    from icalign_nb.generation.types import GenerationConfig, Request

    backend = backend_for(model, shapes.max_rows)
    ids = prompts(shapes.lengths, model.config.vocab_size)
    requests = [Request(f"p{i}", 0, "", (), 0, tuple(p)) for i, p in enumerate(ids)]
    seen = {r.key: ([], []) for r in requests}

    def record(events: list) -> None:
        for e in events:
            if e.token is not None:
                seen[e.request.key][0].append(e.token)
                seen[e.request.key][1].append(e.logits.float().cpu())

    config = GenerationConfig(max_new_tokens=shapes.new_tokens, samples=1, temperature=0)
    list(backend.generate(requests, config, on_tokens=record, ignore_eos=True))
    sdpa = copy.deepcopy(model)
    sdpa.set_attn_implementation("sdpa")
    sdpa.generation_config.eos_token_id = None
    rows = []
    for req in requests:
        tokens, logits = seen[req.key]
        prompt = list(req.prompt_ids)
        with torch.inference_mode():
            full = torch.tensor([prompt + tokens[:-1]], device=model.device)
            forced = sdpa(full).logits[0, len(prompt) - 1 :].float().cpu()
            reference = sdpa.generate(
                torch.tensor([prompt], device=model.device),
                do_sample=False,
                max_new_tokens=len(tokens),
                pad_token_id=0,
            )[0, len(prompt) :].tolist()
        top2 = forced.topk(2, dim=-1).values
        agree, near_tie = len(tokens), None
        for step, (mine, theirs) in enumerate(zip(tokens, reference, strict=False)):
            if mine != theirs:
                agree = step
                near_tie = bool(top2[step, 0] - top2[step, 1] <= LOGIT_TOL)
                break
        rows.append(
            {
                "prompt_tokens": len(prompt),
                "new_tokens": len(tokens),
                "tokens_equal_for": agree,
                "diverged_at_near_tie": near_tie,
                "max_logit_diff": float((forced - torch.stack(logits)).abs().max()),
            }
        )
    worst = max(r["max_logit_diff"] for r in rows)
    equal = all(r["tokens_equal_for"] == r["new_tokens"] or r["diverged_at_near_tie"] for r in rows)
    return {
        "rows": rows,
        "max_logit_diff": worst,
        "greedy_equal": equal,
        "rows_at_most": backend.stats.max_rows,
        "passed": (equal and worst < LOGIT_TOL) if strict else None,
    }


def sampling_across_batch_sizes(model: torch.nn.Module, shapes: Shapes) -> dict:
    """The same seeded samples (temperature 0.7, top-k 50) with 1 row at a time and with all at once."""
    from icalign_nb.generation.types import GenerationConfig, Request

    ids = prompts(shapes.lengths, model.config.vocab_size, seed=1)
    requests = [
        Request(f"p{i}", s, "", (), 1000 * i + s, tuple(p)) for i, p in enumerate(ids) for s in range(2)
    ]
    config = GenerationConfig(max_new_tokens=shapes.new_tokens, samples=2)
    answers = {}
    for rows in (1, len(requests)):
        backend = backend_for(model, rows)
        seen = {r.key: [] for r in requests}
        callback = lambda events, seen=seen: [seen[e.request.key].append(e.token) for e in events]  # noqa: E731
        list(backend.generate(requests, config, on_tokens=callback, ignore_eos=True))
        answers[rows] = seen
    same = answers[1] == answers[len(requests)]
    return {"requests": len(requests), "identical": same, "passed": same}


def big_model(shapes: Shapes, device: str) -> dict:
    """A Llama of Llama-2-13B's shape (random bf16 weights, built on the device) at the paper's load."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from icalign_nb.generation.types import GenerationConfig, Request

    settings = shapes.big or {
        "hidden_size": 5120,
        "intermediate_size": 13824,
        "num_hidden_layers": 40,
        "num_attention_heads": 40,
        "num_key_value_heads": 40,
    }
    config = LlamaConfig(
        vocab_size=32000,
        max_position_embeddings=4096,
        eos_token_id=2,
        bos_token_id=1,
        pad_token_id=0,
        **settings,
    )
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    start = time.perf_counter()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(previous)
    result = {
        "config": settings,
        "dtype": str(dtype),
        "build_seconds": round(time.perf_counter() - start, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    ids = prompts((shapes.big_length,) * shapes.big_prompts, config.vocab_size, seed=2)
    requests = [
        Request(f"p{i}", s, "", (), 7 * i + s, tuple(p))
        for i, p in enumerate(ids)
        for s in range(shapes.big_samples)
    ]
    backend = backend_for(model, 32)
    reached, finite = [0], [True]

    def watch(events: list) -> None:
        for e in events:
            if e.token is not None and not bool(torch.isfinite(e.logits).all()):
                finite[0] = False

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        config_ = GenerationConfig(max_new_tokens=shapes.big_new, samples=shapes.big_samples)
        for results in backend.generate(requests, config_, on_tokens=watch, ignore_eos=True):
            for r in results:
                reached[0] = max(reached[0], r.n_prompt_tokens + r.n_generated_tokens - 1)
        result["out_of_memory"] = False
    except torch.cuda.OutOfMemoryError as exc:
        result["out_of_memory"] = True
        result["error"] = str(exc).splitlines()[0]
    stats = backend.stats
    result.update(
        peak_memory_gb=round(torch.cuda.max_memory_allocated() / 1e9, 2) if device == "cuda" else None,
        kv_pool_gb=round(stats.kv_pool_bytes / 1e9, 2),
        prefill_tok_s=round(stats.prefill_tokens / max(stats.prefill_seconds, 1e-9)),
        decode_tok_s_per_row=round(stats.steps / max(stats.decode_seconds, 1e-9), 2),
        decode_tok_s_total=round(stats.row_steps / max(stats.decode_seconds, 1e-9), 1),
        rows_at_most=stats.max_rows,
        last_position=reached[0],
        last_position_expected=shapes.big_length + shapes.big_new - 1,
        logits_finite=finite[0],
    )
    result["passed"] = (
        (not result["out_of_memory"]) and reached[0] == result["last_position_expected"] and finite[0]
    )
    return result


def run(shapes: Shapes, device: str, out: Path | None) -> dict:
    """Every step in order; a step that fails is recorded with its error and the next one runs."""
    report = Report(out)
    report.step("environment", environment())
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    steps = [
        ("greedy_float32", lambda: greedy_against_reference(tiny_llama(device, torch.float32), shapes, True)),
        (
            "greedy_bfloat16",
            lambda: greedy_against_reference(tiny_llama(device, torch.bfloat16), shapes, False),
        ),
        ("sampling_float32", lambda: sampling_across_batch_sizes(tiny_llama(device, torch.float32), shapes)),
        ("llama_13b_shape", lambda: big_model(shapes, device)),
    ]
    for name, step in steps:
        start = time.perf_counter()
        try:
            result = step()
        except Exception as exc:  # a smoke test reports every failure and goes on
            result = {
                "passed": False,
                "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc(),
            }
        result["seconds"] = round(time.perf_counter() - start, 1)
        report.step(name, result)
        if device == "cuda":
            torch.cuda.empty_cache()
    return report.data


if pytest is not None:

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
    def test_gpu_smoke(tmp_path: Path) -> None:
        data = run(Shapes(), "cuda", tmp_path / "gpu-smoke.json")
        print(json.dumps(data, indent=2))
        failed = [n for n, r in data["steps"].items() if r.get("passed") is False]
        assert not failed, failed

    def test_cpu_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
        """The script with small shapes on the CPU: every step runs and fills the JSON a GPU run would
        (printed, so CI's log shows it)."""
        out = tmp_path / "dry-run.json"
        data = run(DRY_RUN, "cpu", out)
        with capsys.disabled():
            print(json.dumps(data, indent=2))
        assert json.loads(out.read_text()) == data
        steps = data["steps"]
        assert list(steps) == [
            "environment",
            "greedy_float32",
            "greedy_bfloat16",
            "sampling_float32",
            "llama_13b_shape",
        ]
        assert steps["greedy_float32"]["passed"], steps["greedy_float32"]
        assert steps["greedy_float32"]["rows_at_most"] == DRY_RUN.max_rows  # rows were refilled
        assert "max_logit_diff" in steps["greedy_bfloat16"], steps["greedy_bfloat16"]
        assert steps["sampling_float32"]["passed"], steps["sampling_float32"]
        big = steps["llama_13b_shape"]
        assert big["passed"] and big["last_position"] == DRY_RUN.big_length + DRY_RUN.big_new - 1, big


def main() -> int:
    parser = argparse.ArgumentParser(
        description="GPU smoke test of the decode loop (see the module docstring)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("gpu-smoke.json"), help="results (JSON), after each step"
    )
    parser.add_argument("--dry-run", action="store_true", help="small shapes on the CPU")
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run for the CPU version", file=sys.stderr)
        return 2
    data = run(DRY_RUN if args.dry_run else Shapes(), "cpu" if args.dry_run else "cuda", args.out)
    print(json.dumps(data, indent=2))
    return 0 if all(r.get("passed") is not False for r in data["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
