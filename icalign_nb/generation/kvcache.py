"""The key/value cache of the decode loop: fixed-size blocks (pages) taken from a pool per layer.

Each prompt's keys and values are stored once, however many samples continue it, and each row's
generated tokens in blocks of its own, added as it grows. A sliding-window layer keeps only what a
window can still see: a prompt's last `window` positions, and a row's blocks until they fall out of
its window. Blocks are handed out lowest id first and taken back the moment a row or prompt ends,
so the highest block in use never passes the most blocks ever held at once (and pages of the pool
beyond it are never touched); nothing is copied when rows come and go.

A decode step reads, for every layer, the pool up to its highest used block as one batched
product: each block meets the queries of the rows that see it (a prompt block: all its samples),
and a per-row softmax joins the blocks of a row's prompt and of its own tokens (each block's
scores in float32, the largest subtracted per row before the exponentials). On the CPU the built
kernel of `native.py` does the step instead where it could be built: each row reads the keys and
values it sees once, and nothing else.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from .attention import LayerInfo, causal_attention

if TYPE_CHECKING:
    from .native import StepKernels

BLOCK = 64  # tokens per block
# queries per kv head (rows x heads sharing it) up to which a step reads the pool as one product per
# head: a bf16 matrix product stays bound by memory, not arithmetic, up to about this many rows here
DENSE_QUERIES = 32


def pool_blocks(
    window: int | None,
    budget: int,
    max_rows: int,
    max_new_tokens: int,
    prompt_lengths: Sequence[int],
    rows_total: int,
    block: int = BLOCK,
) -> int:
    """Blocks a layer needs so that admission by the token budget never runs short.

    The loop admits rows while each held prompt's blocks plus `max_new_tokens`' worth of blocks per
    row fit in the budget's blocks (or one row alone, whatever its size). A sliding layer holds at
    most a window per prompt and a window plus one block per row. Never more than the call's own
    prompts and rows can use at once.
    """
    per_row = -(-max_new_tokens // block)
    need = sum(-(-n // block) for n in prompt_lengths) + rows_total * per_row  # the whole call at once
    bound = max(budget // block, -(-max(prompt_lengths, default=0) // block) + per_row)
    if window is not None:
        span = -(-window // block)
        need = sum(-(-min(n, window) // block) for n in prompt_lengths) + rows_total * min(per_row, span + 1)
        bound = min(bound, (max_rows + 1) * span + max_rows * (span + 1))
    return max(min(need, bound), 1)


@dataclass
class _Blocks:
    """Which blocks of one kind of layer (full, or one window) are free, and who holds the others."""

    window: int | None
    capacity: int
    free: list[int] = field(init=False)  # a heap: the lowest id first
    used: bytearray = field(init=False)  # 1 for each block in use
    group_of: np.ndarray = field(init=False)  # [capacity] the prompt holding each block, -1 if none
    row_of: np.ndarray = field(init=False)  # [capacity] the row holding each block, -1 if none
    base: np.ndarray = field(init=False)  # [capacity] its first column's index in its holder's storage
    prompt: dict[int, list[int]] = field(default_factory=dict)  # group -> its blocks in order
    rows: dict[int, list[int]] = field(default_factory=dict)  # row -> its blocks still held, in order
    first: dict[int, int] = field(default_factory=dict)  # row -> logical index of its first held block
    peak: int = 0  # most blocks held at once
    top: int = 0  # one past the highest block in use

    def __post_init__(self) -> None:
        self.free = list(range(self.capacity))
        self.used = bytearray(self.capacity)
        self.group_of = np.full(self.capacity, -1, dtype=np.int64)
        self.row_of = np.full(self.capacity, -1, dtype=np.int64)
        self.base = np.zeros(self.capacity, dtype=np.int64)

    @property
    def held(self) -> int:
        """Blocks in use."""
        return self.capacity - len(self.free)

    def take(self, n: int) -> list[int]:
        """`n` free blocks, lowest ids first."""
        if n > len(self.free):
            raise RuntimeError(f"key/value pool exhausted: {n} blocks wanted, {len(self.free)} free")
        out = [heapq.heappop(self.free) for _ in range(n)]
        for b in out:
            self.used[b] = 1
        self.top = max([self.top, *(b + 1 for b in out)])
        self.peak = max(self.peak, self.held)
        return out

    def give(self, blocks: Sequence[int]) -> None:
        """Blocks back to the pool."""
        for b in blocks:
            heapq.heappush(self.free, b)
            self.used[b] = 0
        while self.top and not self.used[self.top - 1]:
            self.top -= 1
        if blocks:
            self.group_of[list(blocks)] = -1
            self.row_of[list(blocks)] = -1

    def high(self) -> int:
        """One past the highest block in use (the part of the pool a step reads)."""
        return self.top


class KVState:
    """The paged key/value cache of a running batch: prompts (groups) and rows, placed and removed by
    the caller, who says at each step which rows take a token and in which order."""

    def __init__(
        self,
        layers: Sequence[LayerInfo],
        heads: int,
        kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        capacity: dict[int | None, int],
        block: int = BLOCK,
        kernels: StepKernels | None = None,
    ) -> None:
        self.layers, self.kv_heads, self.head_dim, self.block = list(layers), kv_heads, head_dim, block
        self.group_size = heads // kv_heads  # query heads per kv head
        self.windows = [layer.window for layer in self.layers]
        self.kinds = {w: _Blocks(w, capacity[w]) for w in dict.fromkeys(self.windows)}
        # [kv_heads, blocks, block, head_dim]: a head's blocks are one matrix. Empty, not zeros: pages
        # are touched only as blocks are used (each block is zeroed or written whole when taken)
        self.keys = [
            torch.empty((kv_heads, capacity[x.window], block, head_dim), dtype=dtype, device=x.device)
            for x in self.layers
        ]
        self.values = [torch.empty_like(k) for k in self.keys]
        # every step's attention over the whole used range in the built kernels, if they take this pool
        self.kernels = kernels if kernels is not None and all(kernels.takes(k) for k in self.keys) else None
        self.group_length: dict[int, int] = {}
        self.row_group: dict[int, int] = {}
        self.row_tokens: dict[int, int] = {}  # generated tokens already in the cache
        self._ids = {"group": 0, "row": 0}
        self._free_ids: dict[str, list[int]] = {"group": [], "row": []}
        self.prefill_group: int | None = None
        self.step: _Step | None = None

    def _new_id(self, kind: str) -> int:
        if self._free_ids[kind]:
            return heapq.heappop(self._free_ids[kind])
        self._ids[kind] += 1
        return self._ids[kind] - 1

    def smallest_pool(self) -> int:
        """Blocks of the full-attention layers' pool (the smallest that must hold a whole prompt)."""
        return (
            self.kinds[None].capacity if None in self.kinds else min(k.capacity for k in self.kinds.values())
        )

    def held_tokens(self) -> dict[int | None, int]:
        """Tokens of storage held now per kind of layer (whole blocks)."""
        return {w: k.held * self.block for w, k in self.kinds.items()}

    def peak_bytes(self) -> int:
        """Bytes of the most blocks each layer held at once during this state's life."""
        per_block = 2 * self.kv_heads * self.block * self.head_dim * self.keys[0].element_size()
        return sum(self.kinds[w].peak * per_block for w in self.windows)

    # ---- prompts and rows

    def add_prompt(self, length: int) -> int:
        """Blocks for a prompt of `length` tokens (stored by the next forward pass); its group id."""
        group = self._new_id("group")
        self.group_length[group] = length
        for w, kind in self.kinds.items():
            stored = length if w is None else min(length, w)
            blocks = kind.take(-(-stored // self.block))
            kind.prompt[group] = blocks
            kind.group_of[blocks] = group
            kind.base[blocks] = np.arange(len(blocks)) * self.block
        return group

    def begin_prefill(self, group: int) -> None:
        """The next forward pass is `group`'s prompt (batch 1, no padding): store its keys and values."""
        self.prefill_group = group

    def end_prefill(self) -> None:
        """Back to decode steps."""
        self.prefill_group = None

    def drop_prompt(self, group: int) -> None:
        """A prompt no row continues any more: its blocks are free at once."""
        for kind in self.kinds.values():
            kind.give(kind.prompt.pop(group))
        del self.group_length[group]
        heapq.heappush(self._free_ids["group"], group)

    def add_row(self, group: int) -> int:
        """A new row continuing `group`'s prompt (nothing generated yet); its row id."""
        row = self._new_id("row")
        self.row_group[row] = group
        self.row_tokens[row] = 0
        for kind in self.kinds.values():
            kind.rows[row], kind.first[row] = [], 0
        return row

    def drop_row(self, row: int) -> None:
        """A finished row: its blocks are free at once."""
        for kind in self.kinds.values():
            kind.give(kind.rows.pop(row))
            del kind.first[row]
        del self.row_group[row], self.row_tokens[row]
        heapq.heappush(self._free_ids["row"], row)

    def positions(self, rows: Sequence[int]) -> torch.Tensor:
        """[rows, 1] position of each row's next token: its prompt length plus what it generated."""
        return torch.tensor([[self.group_length[self.row_group[r]] + self.row_tokens[r]] for r in rows])

    # ---- decode steps

    def begin_step(self, rows: Sequence[int]) -> None:
        """Lay out a decode step of `rows` (in that order): blocks for the tokens they are about to
        store, blocks fallen out of every window freed, the masks of every kind of layer."""
        for w, kind in self.kinds.items():
            fresh = []
            for r in rows:
                t, held = self.row_tokens[r], kind.rows[r]
                if w is not None:  # blocks wholly before the window of the row's next token go back
                    gone = max(0, (t - w + 1) // self.block - kind.first[r])
                    if gone:
                        kind.give(held[:gone])
                        del held[:gone]
                        kind.first[r] += gone
                if t >= (kind.first[r] + len(held)) * self.block:
                    (b,) = kind.take(1)
                    kind.row_of[b], kind.base[b] = r, t
                    held.append(b)
                    fresh.append(b)
            if fresh:
                index = torch.tensor(fresh, device="cpu")
                for layer, info in enumerate(self.layers):
                    if info.window == w:
                        where = index.to(info.device)
                        self.keys[layer].index_fill_(1, where, 0)
                        self.values[layer].index_fill_(1, where, 0)
        self.step = _Step(self, list(rows))

    def end_step(self) -> None:
        """The step's token of each of its rows is now in the cache."""
        for r in self.step.rows:
            self.row_tokens[r] += 1
        self.step = None

    def attend(self, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float):
        """Store this layer's new keys/values and attend: a prompt's prefill, or one decode step."""
        window = self.windows[layer]
        if self.prefill_group is not None:
            self._store_prompt(layer, key, value)
            return causal_attention(query, key, value, scale, window)
        return self.step.attend(layer, query, key, value, scale)

    def _store_prompt(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        """Copy a prompt's keys and values ([1, kv_heads, length, dim]) into its blocks (zero-padded)."""
        window = self.windows[layer]
        blocks = self.kinds[window].prompt[self.prefill_group]
        length = key.shape[2]
        stored = length if window is None else min(length, window)
        index = torch.tensor(blocks, device=key.device)
        for pool, src in ((self.keys[layer], key), (self.values[layer], value)):
            padded = src.new_zeros((self.kv_heads, len(blocks) * self.block, self.head_dim))
            padded[:, :stored] = src[0, :, length - stored :]
            pool.index_copy_(1, index, padded.view(self.kv_heads, len(blocks), self.block, -1))


class _Step:
    """One decode step's layout, per kind of layer: what each row sees of every used block, as one mask
    per row over the used range (dense) or per block and slot, with the query each slot meets (blocked:
    a prompt block meets every sample of its prompt, a row's block that row)."""

    def __init__(self, state: KVState, rows: list[int]) -> None:
        self.state, self.rows = state, rows
        block = state.block
        groups = list(dict.fromkeys(state.row_group[r] for r in rows))
        group_index = {g: i for i, g in enumerate(groups)}
        slot, counts = [], [0] * len(groups)
        for r in rows:
            g = group_index[state.row_group[r]]
            slot.append(counts[g])
            counts[g] += 1
        n_groups, n_rows = len(groups), len(rows)
        self.per = per = max(counts)
        # few queries, or the built kernel (which skips what a row does not see): every row against the
        # whole used range at once (its own mask); many in torch: each block against the queries it
        # serves only (see `attend`). The layout is worked out in numpy (small arrays: a tenth of the
        # time of the same operations on tensors), then handed over as tensors.
        self.dense = state.kernels is not None or n_rows * state.group_size <= DENSE_QUERIES
        row_g = np.array([group_index[state.row_group[r]] for r in rows], dtype=np.int64)
        row_slot = np.array(slot, dtype=np.int64)
        tokens = np.array([state.row_tokens[r] for r in rows], dtype=np.int64)
        length = np.array([state.group_length[g] for g in groups], dtype=np.int64)
        # global ids -> this step's indices (-1: not in this step)
        g_lookup = np.full(max(state.group_length) + 1, -1, dtype=np.int64)
        g_lookup[groups] = np.arange(n_groups)
        r_lookup = np.full(max(state.row_group) + 1, -1, dtype=np.int64)
        r_lookup[rows] = np.arange(n_rows)
        if not self.dense:  # each group's rows by slot (n_rows: none)
            slot_row = np.full((n_groups, per), n_rows, dtype=np.int64)
            slot_row[row_g, row_slot] = np.arange(n_rows)
        col = np.arange(block)
        self.kinds: dict[int | None, dict] = {}
        for w, kind in state.kinds.items():
            hi = max(kind.high(), 1)
            owner_g, owner_r, base = kind.group_of[:hi], kind.row_of[:hi], kind.base[:hi]
            gi = np.where(owner_g >= 0, g_lookup[owner_g.clip(min=0)], -1)  # [hi]
            ri = np.where(owner_r >= 0, r_lookup[owner_r.clip(min=0)], -1)
            index = base[:, None] + col  # [hi, block]: what column c of a block holds
            # what each row sees, [rows, hi, block]: in its prompt's blocks, index base + c of the stored
            # prompt (the last `stored` tokens, at position length - stored + index); in its own blocks,
            # its generated token base + c
            stored = length if w is None else length.clip(max=w)
            seen = (gi[None, :] == row_g[:, None])[:, :, None] & (index < stored[row_g][:, None, None])
            t = tokens[:, None, None]
            mine = (ri[None, :] == np.arange(n_rows)[:, None])[:, :, None] & (index <= t)
            if w is not None:  # the window of the row's next token
                query = (length[row_g] + tokens)[:, None, None]
                seen &= (length - stored)[row_g][:, None, None] + index > query - w
                mine &= index > t - w
            seen |= mine
            if self.dense:  # each row's mask over the used range: [rows, (hi - lo) * block]
                # blocks no row sees (a prompt's keys that every row's window has passed) are skipped
                lo = int(seen.any(-1).any(0).argmax())
                bias = np.where(seen[:, lo:], np.float32(0), np.float32(-np.inf))
                self.kinds[w] = {"lo": lo, "hi": hi, "bias": torch.from_numpy(bias.reshape(n_rows, -1))}
                continue
            # the blocked layout: the row each (block, slot) serves (n_rows, a dummy row that sees nothing,
            # where none): a prompt block serves its group's rows, a row's block that row in its slot
            own = np.arange(per)[None, :] == row_slot[ri.clip(min=0)][:, None]  # [hi, per]
            target = np.where(
                (gi >= 0)[:, None],
                slot_row[gi.clip(min=0)],
                np.where((ri >= 0)[:, None] & own, ri.clip(min=0)[:, None], n_rows),
            )
            seen = np.concatenate([seen, np.zeros((1, hi, block), dtype=bool)])[
                target, np.arange(hi)[:, None]
            ]
            bias = np.where(seen, np.float32(0), np.float32(-np.inf))  # [hi, per, block]
            self.kinds[w] = {
                "lo": 0,
                "hi": hi,
                "bias": torch.from_numpy(bias),
                "target": torch.from_numpy(target),
            }
        # each row's slot in its group, and its group
        self.row_slot, self.row_g = torch.from_numpy(row_slot), torch.from_numpy(row_g)
        self.row_block = {}  # kind -> (block, column) where each row's new token goes
        for w, kind in state.kinds.items():
            last = [kind.rows[r][-1] for r in rows]
            col_of = [state.row_tokens[r] % block for r in rows]
            self.row_block[w] = (torch.tensor(last), torch.tensor(col_of))
        self._on: dict[tuple[int | None, torch.device], dict] = {}

    def _tensors(self, window: int | None, device: torch.device) -> dict:
        """The step's index tensors of one kind of layer on one device (copied there once per step)."""
        key = (window, device)
        if key not in self._on:
            kind = self.kinds[window]
            block, column = self.row_block[window]  # where each row's new token goes
            moved = {"bias": kind["bias"]}
            if self.state.kernels is not None:  # the kernel stores it itself, at its index in the used blocks
                moved.update(slot=(block - kind["lo"]) * self.state.block + column, group=self.row_g)
            else:
                moved.update(block=block, column=column)
            if not self.dense:
                moved.update(target=kind["target"], row_slot=self.row_slot, rows=torch.arange(len(self.rows)))
            self._on[key] = {
                "lo": kind["lo"],
                "hi": kind["hi"],
                **{k: v.to(device) for k, v in moved.items()},
            }
        return self._on[key]

    def attend(
        self, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """One decode step of one layer for the step's rows: [rows, 1, heads, dim]; the scores and
        softmax in float32."""
        state = self.state
        x = self._tensors(state.windows[layer], query.device)
        keys, values = state.keys[layer], state.values[layer]
        if state.kernels is not None:  # the step is dense (see __init__); the kernel stores the new token
            new = (key, value, x["slot"])
            return state.kernels.attention(
                query, keys, values, x["bias"], scale, new, x["group"], (x["lo"], x["hi"])
            )
        used = slice(x["lo"], x["hi"])  # the blocked path reads from block 0 (its lo is 0)
        keys[:, x["block"], x["column"]] = key[:, :, 0].transpose(0, 1)
        values[:, x["block"], x["column"]] = value[:, :, 0].transpose(0, 1)
        attend = self._dense if self.dense else self._blocked
        return attend(x, query * scale, keys[:, used], values[:, used]).to(value.dtype)

    def attend_projected(
        self,
        layer: int,
        qkv: torch.Tensor,
        heads: int,
        norm: tuple[torch.Tensor, float],
        rotate: tuple[torch.Tensor, torch.Tensor],
        scale: float,
    ) -> torch.Tensor:
        """`attend` from a layer's fused projection [rows, (heads + 2 * kv_heads) * dim] in one built kernel
        call, its query and key heads normed and rotated first (see `StepKernels.attend_projected`) ->
        [rows, heads * dim]."""
        state = self.state
        x = self._tensors(state.windows[layer], qkv.device)
        pools = (state.keys[layer], state.values[layer])
        return state.kernels.attend_projected(qkv, heads, norm, rotate, pools, x, scale)

    def _dense(self, x: dict, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Every row's queries against every used block of a head in one product, masked per row."""
        n_rows, heads, _, dim = query.shape
        kv_heads, hi, block = keys.shape[0], keys.shape[1], keys.shape[2]
        group = heads // kv_heads
        q = query.view(n_rows, kv_heads, group, dim).transpose(0, 1).reshape(kv_heads, n_rows * group, dim)
        scores = _per_head(q, keys.view(kv_heads, hi * block, dim).transpose(-1, -2))
        # the float32 bias promotes the sum: float32 scores plus the mask in one operation
        scores = torch.add(scores.view(kv_heads, n_rows, group, -1), x["bias"][None, :, None, :])
        probs = torch.softmax(scores, dim=-1).to(values.dtype).view(kv_heads, n_rows * group, -1)
        out = _per_head(probs, values.view(kv_heads, hi * block, dim))  # [kv_heads, rows * group, dim]
        return out.view(kv_heads, n_rows, group, dim).transpose(0, 1).reshape(n_rows, 1, heads, dim)

    def _blocked(
        self, x: dict, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
    ) -> torch.Tensor:
        """Each block's scores meet the queries of its slots only; a row's softmax spans every (block,
        slot) that serves it, joined by scatters over the row each pair serves."""
        n_rows, heads, _, dim = query.shape
        kv_heads, hi, per = keys.shape[0], keys.shape[1], self.per
        group = heads // kv_heads
        target = x["target"]
        q = query.view(n_rows, kv_heads, group, dim)
        q = torch.cat([q, q.new_zeros((1, kv_heads, group, dim))])[target]  # [hi, per, kv_heads, group, dim]
        q = q.permute(2, 0, 1, 3, 4).reshape(kv_heads, hi, per * group, dim)
        scores = torch.matmul(q, keys.transpose(-1, -2)).float().view(kv_heads, hi, per, group, -1)
        scores.add_(x["bias"][None, :, :, None, :])
        index = target[None, :, :, None].expand(kv_heads, hi, per, group)
        top = scores.new_full((kv_heads, n_rows + 1, per, group), float("-inf"))
        top.scatter_reduce_(1, index, scores.amax(-1), "amax")  # each row's largest score, at its slot
        probs = scores.sub_(top.gather(1, index)[..., None]).exp_()
        total = probs.new_zeros(top.shape).scatter_add_(1, index, probs.sum(-1))
        weighted = torch.matmul(probs.view(kv_heads, hi, per * group, -1).to(values.dtype), values)
        out = weighted.new_zeros((kv_heads, n_rows + 1, per, group, dim), dtype=torch.float32)
        out.scatter_add_(
            1,
            index[..., None].expand(kv_heads, hi, per, group, dim),
            weighted.float().view(kv_heads, hi, per, group, dim),
        )
        rows, slots = x["rows"], x["row_slot"]
        out = out[:, rows, slots] / total[:, rows, slots][..., None]  # [kv_heads, rows, group, dim]
        return out.transpose(0, 1).reshape(n_rows, 1, heads, dim)


def _per_head(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A batched product over kv heads; one head as a plain matrix product (a batch of one copies a
    transposed operand here, 8x slower)."""
    return torch.mm(a[0], b[0])[None] if a.shape[0] == 1 else torch.bmm(a, b)


def layer_dims(config: object) -> tuple[int, int, int]:
    """(heads, kv heads, head dim) of a text config."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return heads, kv_heads, getattr(config, "head_dim", None) or config.hidden_size // heads


def capacities(
    layers: Sequence[LayerInfo],
    budget: int,
    max_rows: int,
    max_new_tokens: int,
    prompt_lengths: Sequence[int],
    rows_total: int,
    block: int = BLOCK,
) -> dict[int | None, int]:
    """Pool blocks per kind of layer (see `pool_blocks`)."""
    return {
        w: pool_blocks(w, budget, max_rows, max_new_tokens, prompt_lengths, rows_total, block)
        for w in dict.fromkeys(x.window for x in layers)
    }


def fit_devices(
    capacity: dict[int | None, int],
    layers: Sequence[LayerInfo],
    kv_heads: int,
    head_dim: int,
    dtype: torch.dtype,
    reserve: int,
    block: int = BLOCK,
) -> dict[int | None, int]:
    """The pool sizes cut, on a CUDA device, to what its free memory holds beyond `reserve` bytes (a
    GPU has no pages to touch lazily: the pool is allocated whole). The full-attention pool shrinks
    (and the budget with it); a sliding pool never needs more than the full one. Unchanged elsewhere."""
    per_block = 2 * kv_heads * block * head_dim * torch.empty((), dtype=dtype).element_size()
    devices = {x.device for x in layers if x.device.type == "cuda"}
    room = {d: torch.cuda.mem_get_info(d)[0] - reserve for d in devices}
    top = max(capacity.values())

    def cut(full: int) -> dict[int | None, int]:
        return {w: min(n, full) for w, n in capacity.items()}

    def fits(full: int) -> bool:
        sizes = cut(full)
        return all(
            sum(per_block * sizes[x.window] for x in layers if x.device == d) <= room[d] for d in devices
        )

    if fits(top):
        return capacity
    low, high = 0, top  # the largest full-pool size that fits
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return cut(max(low, 1))
