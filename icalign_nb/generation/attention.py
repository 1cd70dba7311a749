"""Attention for batched decoding on CPU, and the key/value cache it reads and writes.

`attention` is registered with transformers under the name `icalign`. Called without a `kv_state`
it is a drop-in for SDPA (what `model.generate` sees): an unpadded causal prefill runs as blocked
matmuls (2-7x faster than CPU SDPA here, sliding windows included) and a one-token step as grouped
matmuls. Called with a `KVState` (the backend's decode loop) the state owns the cache: each prompt's
keys and values are stored once, however many samples share it, and a row's generated tokens apart;
a decode step attends to both parts with one softmax, so the shared prompt is read once per step
for all its samples.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

NAME = "icalign"
SUFFIX_STEP = 64  # the generated part of the cache grows by this many columns at a time


def register() -> str:
    """Register the attention (and its mask, SDPA's) with transformers; returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    sliding_window: int | None = None,
    softcap: float | None = None,
    kv_state: KVState | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: query [B, H, q, D], key/value [B, Hkv, k, D] -> [B, q, H, D]."""
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    if kv_state is not None:
        return kv_state.attend(module.layer_idx, query, key, value, scale, softcap), None
    q_len, on_cpu = query.shape[2], query.device.type == "cpu"
    if on_cpu and not softcap and q_len > 1 and attention_mask is None and key.shape[2] == q_len:
        return causal_attention(query, key, value, scale), None
    if on_cpu and q_len == 1:
        return one_step_attention(query, key, value, attention_mask, scale, softcap), None
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    extra = {"softcap": softcap} if softcap else {}
    return sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **extra, **kwargs
    )


def _block_rows(head_dim: int) -> int:
    """Query rows per block of the blocked prefill (measured best on this CPU: 128 for D=64, 256 for 256)."""
    return 128 if head_dim <= 128 else 256


def causal_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float, window: int | None = None
) -> torch.Tensor:
    """Causal self-attention of an unpadded sequence, block of queries by block: [B, T, H, D] out.
    With `window`, a query sees only the last `window` positions (itself included).

    The queries of one key/value head are laid out position-major ([B, Hkv, T, group, D]), so that a
    block of positions is one contiguous [n * group, D] matrix: no copy per block.
    """
    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    q = torch.empty((batch, kv_heads, length, group, dim), dtype=query.dtype, device=query.device)
    torch.mul(query.view(batch, kv_heads, group, length, dim).transpose(2, 3), scale, out=q)
    key, value = key.contiguous(), value.contiguous()
    out = torch.empty_like(q)
    step = _block_rows(dim)
    for start in range(0, length, step):
        end = min(start + step, length)
        low = 0 if window is None else max(0, start - window + 1)
        n = end - start
        # one 2-D product per key/value head: a [low:end] slice of one head is contiguous, of all
        # heads it is not (a batched bf16 product over it copies it; 25% slower here)
        flat = torch.empty((batch, kv_heads, n * group, end - low), dtype=q.dtype, device=q.device)
        for b, h in itertools.product(range(batch), range(kv_heads)):
            torch.matmul(q[b, h, start:end].view(n * group, dim), key[b, h, low:end].t(), out=flat[b, h])
        scores = flat.view(batch, kv_heads, n, group, end - low)
        # only the last n columns (the block's own positions) and, with a window, the first n hold
        # masked entries: row i sees column j of the block iff j <= i (window: low + j > start + i - window)
        i = torch.arange(n, device=query.device)
        scores[..., end - low - n :].masked_fill_((i[None, :] > i[:, None])[:, None, :], float("-inf"))
        if window is not None:
            first = min(n, end - low)
            gone = low + i[None, :first] <= start + i[:, None] - window
            scores[..., :first].masked_fill_(gone[:, None, :], float("-inf"))
        probs = torch.softmax(flat, dim=-1)
        for b, h in itertools.product(range(batch), range(kv_heads)):
            torch.matmul(probs[b, h], value[b, h, low:end], out=out[b, h, start:end].view(n * group, dim))
    return out.transpose(1, 2).reshape(batch, length, heads, dim)


def one_step_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    softcap: float | None = None,
) -> torch.Tensor:
    """One new token per row against its cache, as grouped matmuls (CPU SDPA is slow at q_len 1)."""
    batch, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    q = query.reshape(batch, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(q, key.transpose(-1, -2)).float() * scale
    if softcap:
        scores = torch.tanh(scores / softcap) * softcap
    if mask is not None:
        mask = mask[:, :, -1:, :]  # [B, 1, 1, k]
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    return torch.matmul(probs, value).reshape(batch, 1, heads, dim)


class KVState:
    """The key/value cache of a running batch, in slots.

    Group slots hold prompts: per layer `[groups, kv_heads, width, head_dim]`, left-aligned, so that a
    prompt's keys sit in the same columns whatever else is in the batch; a sliding-window layer keeps
    only the last `window` positions (column c of a prompt of length L holds position L - kept + c,
    kept = min(L, width)). Row slots hold what each row generated: `[rows, kv_heads, columns, head_dim]`,
    left-aligned (column t is the row's t-th new token). A row belongs to one group; rows and groups
    are placed and freed by the caller, who also says per step which rows are live.
    """

    def __init__(
        self, model: object, groups: int, rows: int, prompt_width: int, device: object = "cpu"
    ) -> None:
        config = model.config.get_text_config()
        types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
        self.windows = [config.sliding_window if t == "sliding_attention" else None for t in types]
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.dtype, self.device = model.dtype, device
        self.widths = [min(w, prompt_width) if w else prompt_width for w in self.windows]
        self.prefix_k = [self._zeros(groups, w) for w in self.widths]
        self.prefix_v = [self._zeros(groups, w) for w in self.widths]
        self.suffix_k = [self._zeros(rows, SUFFIX_STEP) for _ in self.windows]
        self.suffix_v = [self._zeros(rows, SUFFIX_STEP) for _ in self.windows]
        self.group_length = torch.zeros(groups, dtype=torch.long)
        self.row_group = torch.zeros(rows, dtype=torch.long)
        self.row_tokens = torch.zeros(rows, dtype=torch.long)  # generated tokens already in the cache
        self.prefill_group: int | None = None
        self._step: _StepLayout | None = None

    def _zeros(self, n: int, columns: int) -> torch.Tensor:
        shape = (n, self.kv_heads, columns, self.head_dim)
        return torch.zeros(shape, dtype=self.dtype, device=self.device)

    @property
    def rows(self) -> int:
        """Row slots."""
        return self.row_group.shape[0]

    @property
    def groups(self) -> int:
        """Group slots."""
        return self.group_length.shape[0]

    def add_slots(self, rows: int = 0, groups: int = 0) -> None:
        """Make room for more rows and groups (new slots are empty)."""
        for part, extra in (
            (self.prefix_k, groups),
            (self.prefix_v, groups),
            (self.suffix_k, rows),
            (self.suffix_v, rows),
        ):
            if extra:
                _update(part, lambda t, n=extra: torch.cat([t, t.new_zeros((n, *t.shape[1:]))]))
        self.group_length = torch.cat([self.group_length, self.group_length.new_zeros(groups)])
        self.row_group = torch.cat([self.row_group, self.row_group.new_zeros(rows)])
        self.row_tokens = torch.cat([self.row_tokens, self.row_tokens.new_zeros(rows)])

    # ---- placing prompts and rows

    def begin_prefill(self, group: int, length: int) -> None:
        """The next forward pass is the prompt of `group` (batch 1, no padding): store its keys and values."""
        self.prefill_group = group
        self.group_length[group] = length

    def end_prefill(self) -> None:
        """Back to decode steps."""
        self.prefill_group = None

    def place_row(self, row: int, group: int) -> None:
        """A new row in slot `row`, continuing the prompt of `group` (nothing generated yet)."""
        self.row_group[row] = group
        self.row_tokens[row] = 0

    def free_row(self, row: int) -> None:
        """Slot `row` is empty: it keeps taking a dummy token at column 0 until a new row is placed."""
        self.row_tokens[row] = 0

    def compact(self, rows: Sequence[int], groups: Sequence[int]) -> None:
        """Keep only the given row and group slots, in that order, and no more generated columns than
        the longest kept row needs."""
        rows_t, groups_t = (
            torch.tensor(list(rows), dtype=torch.long),
            torch.tensor(list(groups), dtype=torch.long),
        )
        remap = torch.full((self.groups,), 0, dtype=torch.long)
        remap[groups_t] = torch.arange(len(groups_t))
        for part, keep in (
            (self.prefix_k, groups_t),
            (self.prefix_v, groups_t),
            (self.suffix_k, rows_t),
            (self.suffix_v, rows_t),
        ):
            _update(part, lambda t, k=keep: t[k].contiguous() if len(k) else t[:0])
        self.group_length = self.group_length[groups_t]
        self.row_group = remap[self.row_group[rows_t]]
        self.row_tokens = self.row_tokens[rows_t]
        need = int(self.row_tokens.max()) + 1 if len(rows_t) else 1
        columns = -(-need // SUFFIX_STEP) * SUFFIX_STEP
        if columns < self.suffix_k[0].shape[2]:
            for part in (self.suffix_k, self.suffix_v):
                _update(part, lambda t: t[:, :, :columns].contiguous())

    # ---- decode steps

    def begin_step(self, live: Sequence[int]) -> None:
        """Lay out the next decode step: every row slot takes one token; only `live` rows matter."""
        live_t = torch.tensor(list(live), dtype=torch.long)
        need = int(self.row_tokens.max()) + 1
        if need > self.suffix_k[0].shape[2]:
            columns = -(-need // SUFFIX_STEP) * SUFFIX_STEP
            for part in (self.suffix_k, self.suffix_v):
                _update(part, lambda t: F.pad(t, (0, 0, 0, columns - t.shape[2])))
        self._step = _StepLayout.build(self, live_t)

    def end_step(self, live: Sequence[int]) -> None:
        """The step's token of each live row is now in the cache."""
        self.row_tokens[list(live)] += 1

    def positions(self) -> torch.Tensor:
        """Position of each row slot's next token: its prompt length plus what it generated."""
        return (self.group_length[self.row_group] + self.row_tokens)[:, None]

    def attend(
        self,
        layer: int,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        scale: float,
        softcap: float | None = None,
    ) -> torch.Tensor:
        """Store this layer's new keys/values and attend: a prompt's prefill, or one decode step."""
        if softcap:
            raise NotImplementedError("attention logit soft-capping is not supported by the decode loop")
        window = self.windows[layer]
        if self.prefill_group is not None:
            width = self.widths[layer]
            keep = min(width, key.shape[2])
            self.prefix_k[layer][self.prefill_group, :, :keep] = key[0, :, -keep:]
            self.prefix_v[layer][self.prefill_group, :, :keep] = value[0, :, -keep:]
            return causal_attention(query, key, value, scale, window)
        return self._step.attend(self, layer, query, key, value, scale)


class _StepLayout:
    """Index tensors and masks of one decode step, shared by every layer."""

    def __init__(self) -> None:
        self.gather: torch.Tensor  # [groups, per_group] row slot of each group's k-th live row (0: padding)
        self.row_slot: torch.Tensor  # [rows] position of each row within its group's gather row
        self.prefix_bias: dict[int | None, torch.Tensor]  # window -> [groups, 1, per_group, 1, width]
        self.suffix_bias: dict[int | None, torch.Tensor]  # window -> [rows, 1, 1, columns]

    @classmethod
    def build(cls, state: KVState, live: torch.Tensor) -> _StepLayout:
        """The step's layout from the live rows of `state`."""
        self = cls()
        groups, rows = state.groups, state.rows
        counts = torch.zeros(groups, dtype=torch.long)
        self.row_slot = torch.zeros(rows, dtype=torch.long)
        for r in live.tolist():
            g = int(state.row_group[r])
            self.row_slot[r] = counts[g]
            counts[g] += 1
        per_group = max(int(counts.max()), 1) if groups else 1
        self.gather = torch.zeros(groups, per_group, dtype=torch.long)
        self.gather[state.row_group[live], self.row_slot[live]] = live
        tokens = state.row_tokens  # the step's token goes to column `tokens` of each row
        length = state.group_length
        gathered_tokens = tokens[self.gather]  # [groups, per_group]
        self.prefix_bias, self.suffix_bias = {}, {}
        columns = state.suffix_k[0].shape[2]
        suffix_col = torch.arange(columns)[None, :]
        for window, width in dict(zip(state.windows, state.widths, strict=True)).items():
            col = torch.arange(width)[None, None, :]
            kept = torch.clamp(length, max=width)[:, None, None]  # [groups, 1, 1]
            seen = col < kept
            if window:  # position L - kept + c is seen from position L + t if it is > L + t - window
                seen = seen & (col > gathered_tokens[:, :, None] + kept - window)
            self.prefix_bias[window] = _bias(seen, state.dtype)[:, None, :, None, :]
            seen = suffix_col <= tokens[:, None]
            if window:
                seen &= suffix_col > tokens[:, None] - window
            dead = torch.ones(rows, dtype=torch.bool)
            dead[live] = False
            seen[dead, 0] = True  # a dead slot attends to something (its output is never read)
            self.suffix_bias[window] = _bias(seen, state.dtype)[:, None, None, :]
        device = state.device
        self.gather = self.gather.to(device)
        self.groups_of, self.at = state.row_group.to(device), self.row_slot.to(device)
        self.columns = state.row_tokens.to(device)
        self.slots = torch.arange(rows, device=device)
        self.prefix_bias = {w: b.to(device) for w, b in self.prefix_bias.items()}
        self.suffix_bias = {w: b.to(device) for w, b in self.suffix_bias.items()}
        return self

    def attend(
        self,
        state: KVState,
        layer: int,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        scale: float,
    ) -> torch.Tensor:
        """One decode step of one layer for all row slots: [rows, 1, H, D]."""
        rows, heads, _, dim = query.shape
        kv_heads = state.kv_heads
        group = heads // kv_heads
        window = state.windows[layer]
        suffix_k, suffix_v = state.suffix_k[layer], state.suffix_v[layer]
        suffix_k[self.slots, :, self.columns] = key[:, :, 0]
        suffix_v[self.slots, :, self.columns] = value[:, :, 0]
        q = (query * scale).view(rows, kv_heads, group, dim)
        # the prompt part: each group's rows together against its prompt, read once
        n_groups, per_group = self.gather.shape
        qg = q[self.gather].permute(0, 2, 1, 3, 4).reshape(n_groups, kv_heads, per_group * group, dim)
        prefix = torch.matmul(qg, state.prefix_k[layer].transpose(-1, -2)).view(
            n_groups, kv_heads, per_group, group, -1
        )
        prefix.add_(self.prefix_bias[window])
        suffix = torch.matmul(q, suffix_k.transpose(-1, -2)).add_(self.suffix_bias[window])
        groups_of, at = self.groups_of, self.at
        top = torch.maximum(prefix.amax(-1)[groups_of, :, at], suffix.amax(-1))  # [rows, kv_heads, group]
        top_g = top[self.gather].permute(0, 2, 1, 3)[..., None]  # [groups, kv_heads, per_group, group, 1]
        prefix_p = prefix.sub_(top_g).exp_()  # in place: the scores are not needed again
        suffix_p = suffix.sub_(top[..., None]).exp_()
        total = prefix_p.sum(-1, dtype=torch.float32)[groups_of, :, at] + suffix_p.sum(
            -1, dtype=torch.float32
        )
        prefix_out = torch.matmul(
            prefix_p.view(n_groups, kv_heads, per_group * group, -1), state.prefix_v[layer]
        ).view(n_groups, kv_heads, per_group, group, dim)
        out = prefix_out[groups_of, :, at].float() + torch.matmul(suffix_p, suffix_v).float()
        out = out / total[..., None]
        return out.to(value.dtype).reshape(rows, 1, heads, dim)


def _bias(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where allowed, -inf elsewhere, in the scores' dtype."""
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, float("-inf"))


def _update(part: list[torch.Tensor], change: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Replace each layer's tensor of one cache part (keys or values, prompts or rows) in place."""
    part[:] = [change(t) for t in part]
