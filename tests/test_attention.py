"""The engine's attention against torch's reference (`scaled_dot_product_attention`), in float32."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from icalign_nb.generation import attention as att
from icalign_nb.generation import native
from icalign_nb.generation.kvcache import KVState, LayerInfo
from icalign_nb.generation.native import StepKernels

TOL = 1e-5


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_pos, k_pos, window=None) -> torch.Tensor:
    """SDPA over explicit positions: [B, H, q, D] queries against [B, Hkv, k, D] keys -> [B, q, H, D]."""
    q_pos, k_pos = torch.as_tensor(q_pos), torch.as_tensor(k_pos)
    allowed = k_pos[None, :] <= q_pos[:, None]
    if window is not None:
        allowed &= k_pos[None, :] > q_pos[:, None] - window
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, enable_gqa=True)
    return out.transpose(1, 2)


def qkv(batch: int, heads: int, kv_heads: int, length: int, dim: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, length, dim, generator=gen)
    k = torch.randn(batch, kv_heads, length, dim, generator=gen)
    v = torch.randn(batch, kv_heads, length, dim, generator=gen)
    return q, k, v


@pytest.mark.parametrize(
    ("heads", "kv_heads", "dim", "length", "window"),
    [
        (4, 1, 16, 300, None),
        (4, 2, 8, 300, 16),
        (6, 3, 64, 129, 128),
        (2, 2, 32, 257, 1),
        (8, 2, 256, 600, 512),
    ],
)
def test_causal_prefill_equals_sdpa(heads, kv_heads, dim, length, window) -> None:
    """Blocked causal prefill (several query blocks), grouped heads, windows shorter than the prompt."""
    q, k, v = qkv(2, heads, kv_heads, length, dim)
    scale = dim**-0.5
    got = att.causal_attention(q, k, v, scale, window)
    pos = torch.arange(length)
    torch.testing.assert_close(got, reference(q, k, v, pos, pos, window), atol=TOL, rtol=TOL)


@pytest.mark.parametrize("window", [None, 5])
def test_one_step_with_a_padding_mask_equals_sdpa(window) -> None:
    """A one-token step of a left-padded batch (what `model.generate` sends): padding never seen."""
    heads, kv_heads, dim, length = 4, 2, 16, 20
    q, k, v = qkv(3, heads, kv_heads, length, dim, seed=1)
    q = q[:, :, -1:]
    pads = [0, 3, 11]
    allowed = torch.ones(3, 1, 1, length, dtype=torch.bool)
    for b, p in enumerate(pads):
        allowed[b, ..., :p] = False
        if window:
            allowed[b, ..., : length - window] = False
    got = att.one_step_attention(q, k, v, allowed, dim**-0.5)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, enable_gqa=True).transpose(1, 2)
    torch.testing.assert_close(got, want, atol=TOL, rtol=TOL)
    additive = torch.zeros(allowed.shape).masked_fill_(~allowed, float("-inf"))
    torch.testing.assert_close(att.one_step_attention(q, k, v, additive, dim**-0.5), want, atol=TOL, rtol=TOL)


def test_one_step_softcap_equals_the_eager_formula() -> None:
    heads, kv_heads, dim, length, cap = 4, 2, 16, 12, 5.0
    q, k, v = qkv(1, heads, kv_heads, length, dim, seed=2)
    q = q[:, :, -1:] * 10
    scores = torch.matmul(q, k.repeat_interleave(2, 1).transpose(-1, -2)) * dim**-0.5
    probs = torch.softmax(torch.tanh(scores / cap) * cap, dim=-1)
    want = torch.matmul(probs, v.repeat_interleave(2, 1)).transpose(1, 2)
    torch.testing.assert_close(
        att.one_step_attention(q, k, v, None, dim**-0.5, cap), want, atol=TOL, rtol=TOL
    )


class Driver:
    """Runs a KVState the way the backend does, keeping every key and value for the reference."""

    def __init__(
        self,
        layers: list[int | None],
        heads: int = 4,
        kv_heads: int = 2,
        dim: int = 16,
        blocks: int = 64,
        kernels: StepKernels | None = None,
    ) -> None:
        self.layers, self.heads, self.kv_heads, self.dim = layers, heads, kv_heads, dim
        info = [LayerInfo(w, torch.device("cpu")) for w in layers]
        self.state = KVState(
            info, heads, kv_heads, dim, torch.float32, dict.fromkeys(layers, blocks), block=8, kernels=kernels
        )
        self.prompt_kv: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # group -> per layer
        self.row_kv: dict[int, list[list[tuple[torch.Tensor, torch.Tensor]]]] = {}  # row -> per layer
        self.gen = torch.Generator().manual_seed(7)

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.gen)

    def prefill(self, length: int) -> int:
        """Encode a prompt (checking each layer's output against SDPA); its group."""
        state = self.state
        group = state.add_prompt(length)
        state.begin_prefill(group)
        self.prompt_kv[group] = []
        pos = torch.arange(length)
        for layer, window in enumerate(self.layers):
            q = self.rand(1, self.heads, length, self.dim)
            k, v = (
                self.rand(1, self.kv_heads, length, self.dim),
                self.rand(1, self.kv_heads, length, self.dim),
            )
            got = state.attend(layer, q, k, v, self.dim**-0.5)
            torch.testing.assert_close(got, reference(q, k, v, pos, pos, window), atol=TOL, rtol=TOL)
            self.prompt_kv[group].append((k[0], v[0]))
        state.end_prefill()
        return group

    def place(self, group: int) -> int:
        row = self.state.add_row(group)
        self.row_kv[row] = [[] for _ in self.layers]
        return row

    def free(self, row: int) -> None:
        self.state.drop_row(row)
        del self.row_kv[row]

    def step(self, order: list[int] | None = None) -> float:
        """One decode step of every live row; the largest difference from SDPA over all layers."""
        state = self.state
        live = order or sorted(self.row_kv)
        state.begin_step(live)
        positions = state.positions(live)[:, 0]
        worst = 0.0
        n = len(live)
        for layer, window in enumerate(self.layers):
            q = self.rand(n, self.heads, 1, self.dim)
            k, v = self.rand(n, self.kv_heads, 1, self.dim), self.rand(n, self.kv_heads, 1, self.dim)
            got = state.attend(layer, q, k, v, self.dim**-0.5)
            for i, r in enumerate(live):
                pk, pv = self.prompt_kv[state.row_group[r]][layer]
                self.row_kv[r][layer].append((k[i, :, 0], v[i, :, 0]))
                gk = torch.stack([x for x, _ in self.row_kv[r][layer]], 1)
                gv = torch.stack([x for _, x in self.row_kv[r][layer]], 1)
                keys, values = torch.cat([pk, gk], 1)[None], torch.cat([pv, gv], 1)[None]
                length = keys.shape[2]
                assert int(positions[i]) == length - 1
                want = reference(q[i : i + 1], keys, values, [length - 1], torch.arange(length), window)
                worst = max(worst, float((got[i : i + 1] - want).abs().max()))
        state.end_step()
        return worst


@pytest.mark.parametrize(
    ("dense", "kernel"),
    [(0, False), (1000, False), (1000, True)],
    ids=["per block", "whole range", "built kernel"],
)
@pytest.mark.parametrize("layers", [[None, None], [4, None, 4], [None, 20]])
def test_decode_equals_sdpa_with_shared_prompts_ragged_lengths_and_refills(
    layers, dense, kernel, monkeypatch, built_kernels
) -> None:
    """Prompts of different lengths (longer and shorter than the windows, several blocks of 8), several
    samples per prompt, rows leaving and joining at different steps (their blocks reused), rows in any
    order: every row's output equals SDPA over its own prompt + generated keys, at every step and layer,
    whether a step reads each block against the queries it serves or the whole range per row (in torch,
    or in the built kernel)."""
    import icalign_nb.generation.kvcache as kvcache

    monkeypatch.setattr(kvcache, "DENSE_QUERIES", dense)
    d = Driver(layers, kernels=built_kernels if kernel else None)
    groups = [d.prefill(n) for n in (37, 3, 12)]
    rows = [d.place(groups[g]) for g in (0, 0, 0, 1, 2, 2)]  # 3 samples of prompt 0, 1 of 1, 2 of 2
    worst = 0.0
    for step in range(40):
        if step == 5:
            d.free(rows[1])
            d.free(rows[3])
        if step == 9:
            rows.append(d.place(groups[1]))  # a new sample of prompt 1 takes freed blocks
        if step == 14:
            d.free(rows[0])
            d.free(rows[2])
        if step == 20:
            groups.append(d.prefill(50))
            rows.append(d.place(groups[-1]))
        order = sorted(d.row_kv, reverse=step % 2 == 1)
        worst = max(worst, d.step(order))
    assert worst < TOL
    held = d.state.held_tokens()
    d.free(rows[4])
    d.free(rows[5])
    for r in list(d.row_kv):
        d.free(r)
    for g in list(d.state.group_length):
        d.state.drop_prompt(g)
    assert all(k.held == 0 for k in d.state.kinds.values()) and all(v > 0 for v in held.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("heads", "kv_heads", "dim", "keys"),
    [
        (4, 1, 256, 600),
        (4, 1, 256, 1100),
        (8, 2, 64, 300),
        (6, 2, 16, 40),
        (2, 2, 24, 17),
        (8, 1, 32, 513),
        (5, 5, 48, 70),
        (7, 1, 128, 300),
        (12, 2, 64, 90),
        (18, 2, 32, 40),
        (8, 8, 128, 100),
    ],
)
def test_built_kernel_equals_sdpa(dtype, heads, kv_heads, dim, keys, built_kernels) -> None:
    """The kernel against SDPA on the same (rounded) keys and values, after it stored each row's new key
    and value: grouped heads of every size the kernel specialises and others, dims that its vector loops
    take and that they do not, key counts across its chunks, rows seeing windows, gaps, single keys and
    random subsets, rows of one prompt going through the keys together (interleaved with others, more
    of them than one segment holds), ranges split across threads and joined (the same on one thread)."""
    kernels = built_kernels
    rows = 12
    gen = torch.Generator().manual_seed(heads * dim + keys)
    # the queries and new keys as the decoder hands them: slices of one projection's heads
    projected = torch.randn(rows, heads + 2 * kv_heads, 1, dim, generator=gen).to(dtype)
    q, new_k, new_v = projected.split([heads, kv_heads, kv_heads], dim=1)
    k = torch.randn(kv_heads, keys, dim, generator=gen).to(dtype)
    v = torch.randn(kv_heads, keys, dim, generator=gen).to(dtype)
    seen = torch.rand(rows, keys, generator=gen) < 0.7
    seen[0] = True
    seen[1] = True
    seen[1, : keys // 2] = False  # a window that has passed the first half
    seen[1, keys // 2 + 3 : keys // 2 + 7] = False  # and a gap
    seen[2] = False
    # where each row's new token goes (distinct keys, each seen by its row; row 2 sees only its own)
    slot = torch.randperm(keys - 1, generator=gen)[:rows]
    slot[2] = keys - 1
    seen[torch.arange(rows), slot] = True
    # rows of one prompt go through the keys together: nine of prompt 0 (more than one segment), two of 1
    share = torch.tensor([0, 1, 2, 0, 0, 1, 0, 0, 0, 0, 0, 0])
    bias = torch.zeros(rows, keys).masked_fill_(~seen, float("-inf"))
    scale = dim**-0.5
    pool_k, pool_v = k.clone().view(kv_heads, 1, keys, dim), v.clone().view(kv_heads, 1, keys, dim)
    threads = torch.get_num_threads()
    try:  # one thread, then every thread: long ranges are split by position alone, so the same bits
        torch.set_num_threads(1)
        alone = kernels.attention(q, pool_k.clone(), pool_v.clone(), bias, scale, (new_k, new_v, slot), share)
    finally:
        torch.set_num_threads(threads)
    got = kernels.attention(q, pool_k, pool_v, bias, scale, (new_k, new_v, slot), share)
    assert torch.equal(got, alone)
    k[:, slot], v[:, slot] = new_k[:, :, 0].transpose(0, 1), new_v[:, :, 0].transpose(0, 1)
    assert torch.equal(pool_k.view_as(k), k) and torch.equal(pool_v.view_as(v), v)
    want = F.scaled_dot_product_attention(
        q.float(),
        k.float()[None].expand(rows, -1, -1, -1),
        v.float()[None].expand(rows, -1, -1, -1),
        attn_mask=seen[:, None, None, :],
        scale=scale,
        enable_gqa=True,
    ).transpose(1, 2)
    assert got.dtype == dtype  # float32 throughout, rounded once
    rounding = 0.0 if dtype == torch.float32 else 2.0**-8
    torch.testing.assert_close(got.float(), want, atol=TOL, rtol=TOL + rounding)


def test_a_kernel_that_cannot_be_built_leaves_attention_in_torch(tmp_path, monkeypatch, capsys) -> None:
    """A damaged build in the cache is said and removed; a build that fails is said in one line, leaves
    no folder behind, and the engine's attention stays in torch (None)."""
    monkeypatch.setenv("ICALIGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "FLAGS", ("-O3", "--no-such-compiler-flag"))
    kernels = tmp_path / "cache" / "kernels"
    final, name = native.home(native.SOURCE.read_text())
    final.mkdir(parents=True)
    (final / f"{name}.so").write_bytes(b"not a library")
    assert native.step_kernels.__wrapped__() is None
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"note: damaged cache entry {final}")
    assert err[-1].startswith("note: the decode-step kernels could not be built (")
    assert "Traceback" not in "\n".join(err) and list(kernels.iterdir()) == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_built_norm_equals_the_models_formula(dtype, built_kernels) -> None:
    """Gemma 3's norm in the kernel: x * rsqrt(mean(x^2) + eps) * scale in float32, once rounded to x's
    dtype; on plain rows, and on a strided slice of heads with one scale per head, then rotated."""
    kernels = built_kernels
    gen = torch.Generator().manual_seed(3)
    tol = {"atol": TOL, "rtol": TOL} if dtype == torch.float32 else {"atol": 1e-6, "rtol": 2**-8}

    def want(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return (F.rms_norm(x.float(), scale.shape[-1:], None, 1e-6) * scale).to(dtype)

    x = (torch.randn(3, 640, generator=gen) * 5).to(dtype)
    scale = torch.randn(640, generator=gen)
    torch.testing.assert_close(kernels.rms_norm(x, scale, 1e-6), want(x, scale), **tol)
    qkv = (torch.randn(2, 7, 24, generator=gen) * 3).to(dtype)
    heads = qkv[:, :5]  # 4 query heads and 1 key head, then the values
    per_head = torch.randn(5, 24, generator=gen)
    torch.testing.assert_close(kernels.rms_norm(heads, per_head, 1e-6), want(heads, per_head), **tol)
    # then the rotary embedding, as the decoder's tensor operations compute it (each step rounded to the
    # dtype): the same numbers, not only close ones
    from icalign_nb.generation.decoder import _rotate

    angles = torch.rand(2, 1, 24, generator=gen) * 6
    cos = angles.cos().to(dtype)
    sin = torch.cat([-angles[..., :12].sin(), angles[..., 12:].sin()], -1).to(dtype)
    rotated = _rotate(kernels.rms_norm(heads, per_head, 1e-6), cos, sin)  # the normed vectors, rotated
    got = kernels.rms_norm(heads, per_head, 1e-6, rotate=(cos, sin))
    if dtype == torch.bfloat16:
        assert torch.equal(got, rotated)
    else:
        torch.testing.assert_close(got, rotated, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("weights", ["int8", "dtype"])
@pytest.mark.parametrize("threads", [1, 2])
def test_built_weights_product_is_the_exact_product(dtype, weights, threads, built_kernels) -> None:
    """The kernel's product of 1-16 rows with int8 weights and their scales, or with weights in the rows'
    dtype, against the exact one (float64, then rounded once): output counts that fill its blocks of 16,
    8 and 4 rows and that leave some over, row counts that fill its groups of 4 and leave some over,
    inputs its vector loops (16 and, for bf16 weights, 32 at a time) take whole and with a remainder,
    and a layer large enough to be split across threads."""
    gen = torch.Generator().manual_seed(7)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for outs, inputs in ((64, 640), (37, 40), (5, 48), (2100, 1024)):
            if weights == "int8":
                weight = torch.randint(-127, 128, (outs, inputs), generator=gen, dtype=torch.int8)
                scales = (torch.rand(outs, generator=gen) * 0.02 + 1e-3).to(dtype)
            else:
                weight, scales = torch.randn(outs, inputs, generator=gen).to(dtype), None
            for rows in (1, 2, 3, 4, 5, 7, 16):
                x = torch.randn(rows, inputs, generator=gen).to(dtype)
                factor = 1.0 if scales is None else scales.double()
                exact = x.double() @ weight.double().T * factor
                got = built_kernels.product(x, weight, scales)
                assert got.dtype == dtype and got.shape == (rows, outs)
                # float32 sums, then one rounding to the dtype (half its last place)
                size = x.double().abs() @ weight.double().abs().T * factor
                rounding = 0.0 if dtype == torch.float32 else 2.0**-8
                bound = 1e-6 * size + rounding * exact.abs() + 1e-12
                assert ((got.double() - exact).abs() <= bound).all(), (outs, inputs, rows)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_built_top_values_are_the_largest_lowest_index_first(dtype, built_kernels) -> None:
    """Each row's k largest logits and their indices, against a stable sort: rows full of equal values
    (small integers), rows shorter than k blocks, vocabularies that leave a part block, -inf logits,
    k = 1 (argmax, which torch's argmax matches), and rows split across threads."""
    gen = torch.Generator().manual_seed(11)
    for vocab, rows in ((262_144, 3), (1000, 2), (4097, 5), (50, 1)):
        logits = torch.randint(-40, 40, (rows, vocab), generator=gen).to(dtype)
        logits[0, ::7] = float("-inf")
        logits[-1] += torch.randn(vocab, generator=gen).to(dtype)  # a row of (mostly) distinct values
        for k in (1, 5, 50):
            if k > vocab:
                continue
            values, index = built_kernels.top(logits, k)
            for r in range(rows):
                want = torch.sort(-logits[r].float(), stable=True)  # equal values: lowest index first
                assert torch.equal(values[r], -want.values[:k]) and torch.equal(index[r], want.indices[:k])
            if k == 1:
                assert torch.equal(index[:, 0], logits.argmax(-1))
    broken = torch.zeros(2, 300, dtype=dtype)
    broken[1, 17] = float("nan")
    with pytest.raises(RuntimeError, match="the logits hold NaN"):
        built_kernels.top(broken, 5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_built_add_norms_is_the_norm_the_sum_and_the_next_norm(dtype, built_kernels) -> None:
    """Gemma 3's end of a sublayer in one call: the same bits as its sandwich norm, the residual sum in
    the dtype and the next norm called one after another."""
    gen = torch.Generator().manual_seed(5)
    hidden = (torch.randn(3, 640, generator=gen) * 20).to(dtype)
    out = torch.randn(3, 640, generator=gen).to(dtype)
    post, then = torch.rand(640, generator=gen) + 0.5, torch.rand(640, generator=gen) + 0.5
    h, x = built_kernels.add_norms(hidden, out, (post, then), 1e-6)
    want_h = hidden + built_kernels.rms_norm(out, post, 1e-6)
    assert torch.equal(h, want_h) and torch.equal(x, built_kernels.rms_norm(want_h, then, 1e-6))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_built_gate_is_the_activation_times_up(dtype, built_kernels) -> None:
    """An MLP's act(gate) * up in one call, against torch's GELU (tanh form) and SiLU on the same rows:
    the activation rounded to the dtype, then the product (bf16: within a rounding of the dtype; float32:
    within 1e-5, where both lose digits to 1 + tanh near -1), over widths the vector loop takes whole and
    with a remainder."""
    gen = torch.Generator().manual_seed(3)
    for inner in (2048, 37):
        gate_up = (torch.randn(3, 2 * inner, generator=gen) * 4).to(dtype)
        gate, up = gate_up.chunk(2, dim=-1)
        for kind, act in ((0, lambda g: F.gelu(g, approximate="tanh")), (1, F.silu)):
            got = built_kernels.gated(gate_up, kind)
            want = act(gate) * up
            assert got.dtype == dtype and got.shape == want.shape
            tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-3, rtol=2.0**-7)
            torch.testing.assert_close(got, want, **tol)


def test_the_decoder_takes_transformers_activations_to_the_built_gate(built_kernels) -> None:
    """The lean decoder's gate recognises transformers' GELU (tanh form, Gemma 3) and SiLU (Llama) modules
    and calls the kernel for them; another activation stays in torch."""
    from transformers.activations import ACT2FN

    from icalign_nb.generation.decoder import _gate

    gate_up = torch.randn(2, 64).bfloat16()
    for name, kind in (("gelu_pytorch_tanh", 0), ("silu", 1)):
        assert torch.equal(_gate(ACT2FN[name], built_kernels)(gate_up), built_kernels.gated(gate_up, kind))
    gate, up = gate_up.chunk(2, dim=-1)
    assert torch.equal(_gate(ACT2FN["relu"], built_kernels)(gate_up), F.relu(gate) * up)
