"""The decode loop against transformers' own eager attention: teacher-forced logits at every step, and
greedy tokens wherever the reference's top-2 margin is wider than the tolerance (float32)."""

from __future__ import annotations

import copy

import pytest
import torch

from icalign_nb.errors import UserError
from icalign_nb.generation.transformers_backend import TransformersBackend
from icalign_nb.generation.types import GenerationConfig, Request
from icalign_nb.retrieval.prompts import PAPER_STOP, icl_prompt, zero_shot_prompt

TOL = 1e-4  # float32 logits (the attention itself agrees with SDPA to 1e-5: tests/test_attention.py)


def tiny_llama(vocab: int) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
    )
    return LlamaForCausalLM(config).eval()


def tiny_gemma3(vocab: int, window: int = 16) -> torch.nn.Module:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        sliding_window=window,
        layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        max_position_embeddings=1024,
    )
    return Gemma3ForCausalLM(config).eval()


def engine_run(backend: TransformersBackend, requests: list[Request], new: int) -> dict:
    """Greedy through the decode loop: per request, its tokens and the logits each was drawn from."""
    seen: dict = {r.key: ([], []) for r in requests}

    def record(events: list) -> None:
        for e in events:
            if e.token is not None:
                seen[e.request.key][0].append(e.token)
                seen[e.request.key][1].append(e.logits.clone())

    config = GenerationConfig(max_new_tokens=new, samples=1, temperature=0)
    list(backend.generate(requests, config, on_tokens=record, ignore_eos=True))
    return {k: (toks, torch.stack(logits)) for k, (toks, logits) in seen.items()}


def check_against_eager(backend: TransformersBackend, prompts: list[list[int]], new: int) -> float:
    """Run every prompt (the first twice: two samples of one prompt) together; compare each row with
    eager attention. Returns the largest logit difference seen."""
    eager = copy.deepcopy(backend.model)
    eager.set_attn_implementation("eager")
    requests = [Request(f"p{i}", 0, "", (), 0, tuple(p)) for i, p in enumerate(prompts)]
    requests.append(Request("p0", 1, "", (), 0, tuple(prompts[0])))
    runs = engine_run(backend, requests, new)
    worst = 0.0
    for req in requests:
        tokens, logits = runs[req.key]
        ids = list(req.prompt_ids)
        with torch.inference_mode():
            forced = eager(torch.tensor([ids + tokens[:-1]])).logits[0, len(ids) - 1 :].float()
            greedy = eager.generate(
                torch.tensor([ids]),
                max_new_tokens=len(tokens),
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )[0, len(ids) :].tolist()
        assert forced.shape == logits.shape
        worst = max(worst, float((forced - logits).abs().max()))
        top2 = forced.topk(2, dim=-1).values
        for step, (mine, theirs) in enumerate(zip(tokens, greedy, strict=False)):
            if float(top2[step, 0] - top2[step, 1]) <= TOL:
                break  # a near-tie: the two may pick differently, and all later steps differ
            assert mine == theirs, f"{req.key}: step {step}"
    return worst


@pytest.fixture(scope="module")
def vocab(tiny_tokenizer) -> int:
    return len(tiny_tokenizer)


@pytest.mark.parametrize(
    ("lean", "native"),
    [(True, True), (True, False), (False, True)],
    ids=["lean decode, built kernels", "lean decode in torch", "transformers decode"],
)
@pytest.mark.parametrize("build", [tiny_llama, tiny_gemma3])
def test_engine_equals_eager_attention_on_tiny_models(build, lean, native, vocab, tiny_tokenizer) -> None:
    """Ragged prompts (3 to 90 tokens: Gemma's 16-token window is shorter than all but one), one of
    them shared by two samples, all decoded together for 40 steps, through the lean decode step (with
    the built kernels, and in torch alone as where they cannot be built) and through transformers'
    forward (what other model families use)."""
    backend = TransformersBackend(
        "tiny-random", model=build(vocab), tokenizer=tiny_tokenizer, batch_size=8, native=native
    )
    assert backend.decoder is not None and (backend.kernels is not None) == native
    if not lean:
        backend.decoder = None
    gen = torch.Generator().manual_seed(3)
    prompts = [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in (90, 3, 17, 64)]
    assert check_against_eager(backend, prompts, 40) < TOL


def test_refuses_attention_it_does_not_implement(vocab, tiny_tokenizer) -> None:
    """Gemma 2 soft-caps its attention logits: refused when the backend is built, in one line."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        attn_logit_softcapping=50.0,
    )
    with pytest.raises(UserError, match="soft-capping"):
        TransformersBackend("tiny-random", model=Gemma2ForCausalLM(config).eval(), tokenizer=tiny_tokenizer)


def real_prompts(tokenizer: object, bos: bool) -> list[list[int]]:
    """Three of the main job's prompt shapes, from the starter pool: zero-shot, 2 demos and 5 demos,
    the last two longer than Gemma 3's 512-token window."""
    from icalign_nb.data.loaders import load_pool
    from icalign_nb.models.tokens import encode_prompts

    pool = load_pool("starter")
    demos = list(zip(pool["prompt"].to_list(), pool["response"].to_list(), strict=True))
    query = "How do I get a red wine stain out of a carpet?"
    texts = [zero_shot_prompt(query), icl_prompt(query, demos[:2]), icl_prompt(query, demos[10:15])]
    return encode_prompts(tokenizer, texts, bos)


@pytest.mark.slow
def test_gemma3_270m_equals_eager_attention_in_float32() -> None:
    backend = TransformersBackend("gemma-3-270m", batch_size=4, device="cpu", dtype="float32")
    prompts = real_prompts(backend.tokenizer, backend.bos)
    assert len(prompts[2]) > len(prompts[1]) > 512
    assert check_against_eager(backend, prompts, 12) < TOL
    assert PAPER_STOP  # the prompts end in the paper's answer slot
