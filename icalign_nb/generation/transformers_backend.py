"""The transformers backend: batched decoding with shared prompt encodings, stops in flight, per-row seeds."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence

from ..errors import UserError
from ..retrieval.prompts import clean_answer
from .types import GenerationConfig, Request, Result


def length_batches(requests: Sequence[Request], batch_size: int) -> list[list[Request]]:
    """Batches of at most `batch_size` rows: similar prompt lengths, equal stops, and the samples of
    one prompt kept together so that its prompt is encoded once."""
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1 (got {batch_size})")
    ordered = sorted(requests, key=lambda r: (r.stop, len(r.prompt_ids) or len(r.prompt), r.prompt, r.key))
    batches: list[list[Request]] = []
    for _, same in itertools.groupby(ordered, key=lambda r: (r.stop, r.prompt)):
        group = list(same)
        for i in range(0, len(group), batch_size):
            part = group[i : i + batch_size]
            last = batches[-1] if batches else None
            if last and len(last) + len(part) <= batch_size and last[0].stop == part[0].stop:
                last.extend(part)
            else:
                batches.append(part)
    return batches


def finish_row(
    ids: Sequence[int], tokenizer: object, stops: Sequence[str], eos_ids: set[int], pad_id: int | None
) -> tuple[str, int, str]:
    """Decode one row's new tokens: (cleaned answer, tokens generated, stop|eos|length).

    Rows that finished early are padded; the first eos/pad marks the row's end. A stop string that
    the in-flight check caught is still in the text and is cut here, never saved.
    """
    end = next((i for i, t in enumerate(ids) if t in eos_ids or t == pad_id), len(ids))
    text = tokenizer.decode(list(ids[:end]), skip_special_tokens=True)
    answer, stopped = clean_answer(text, stops)
    if stopped:
        return answer, end, "stop"
    if end < len(ids) and ids[end] in eos_ids:
        return answer, end + 1, "eos"
    return answer, end, "length"


class RowSampler:
    """Draws each row's next token with its own generator, so samples do not depend on the batch.

    Logits are warped as transformers' sampling does (temperature, then top-k, then top-p);
    temperature 0 is greedy.
    """

    def __init__(self, seeds: Sequence[int], config: GenerationConfig, device: object) -> None:
        import torch
        from transformers.generation import (
            LogitsProcessorList,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        self.greedy = config.greedy
        self.warpers = LogitsProcessorList()
        if not self.greedy:
            self.warpers.append(TemperatureLogitsWarper(config.temperature))
        if config.effective_top_k:
            self.warpers.append(TopKLogitsWarper(config.effective_top_k))
        if config.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(config.top_p))
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]

    def pick(self, logits: object, rows: Sequence[int]) -> object:
        """Next token of each active row (`rows` index the batch, in the order of `logits`)."""
        import torch

        if self.greedy:
            return logits.argmax(dim=-1)
        probs = torch.softmax(self.warpers(None, logits.float()), dim=-1)
        draws = [
            torch.multinomial(p, 1, generator=self.generators[r]) for p, r in zip(probs, rows, strict=True)
        ]
        return torch.cat(draws)


def _cache_keyword(model: object) -> str:
    """The forward argument that takes the key/value cache (`cache` in newer transformers)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_of(output: object) -> object:
    """The key/value cache a forward pass returned, under either name."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


class TransformersBackend:
    """Batched `model.generate` with left padding, stop strings in flight and per-row seeds."""

    name = "transformers"

    def __init__(
        self,
        model_name: str,
        batch_size: int = 8,
        device: str | None = None,
        model: object | None = None,
        tokenizer: object | None = None,
    ) -> None:
        from ..models import load_model, load_tokenizer

        self.model_name = model_name
        self.batch_size = batch_size
        self.tokenizer = tokenizer or load_tokenizer(model_name)
        self.model = model or load_model(model_name, device=device)

    def generate(self, requests: Sequence[Request], config: GenerationConfig) -> Iterator[list[Result]]:
        """Yield one list of results per batch of similar-length prompts."""
        for batch in length_batches(requests, self.batch_size):
            yield self.generate_batch(batch, config)

    def generate_batch(self, batch: Sequence[Request], config: GenerationConfig) -> list[Result]:
        """Generate one batch: each distinct prompt is encoded once and shared by its samples; a row
        leaves the batch (and the key/value cache) as soon as it hits a stop string, eos or the cap."""
        import torch

        start = time.perf_counter()
        tok, model = self.tokenizer, self.model
        distinct = list(dict.fromkeys(r.prompt for r in batch))
        enc = tok(distinct, add_special_tokens=False, padding=True, return_tensors="pt").to(model.device)
        rows_of = torch.tensor([distinct.index(r.prompt) for r in batch], device=model.device)
        mask = enc["attention_mask"]
        eos_ids = self._eos_ids()
        window = (
            max((len(tok(s, add_special_tokens=False)["input_ids"]) for s in batch[0].stop), default=0) + 4
        )
        sampler = RowSampler([r.seed for r in batch], config, model.device)
        new: list[list[int]] = [[] for _ in batch]
        active = list(range(len(batch)))
        with torch.inference_mode():
            out = model(
                input_ids=enc["input_ids"],
                attention_mask=mask,
                use_cache=True,
                logits_to_keep=1,
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
            )
            cache, mask = _cache_of(out), mask[rows_of]
            cache_arg = _cache_keyword(model)
            cache.batch_select_indices(rows_of)
            logits = out.logits[rows_of, -1, :]
            for _ in range(config.max_new_tokens):
                picked = sampler.pick(logits, active)
                keep = []
                for j, (row, token) in enumerate(zip(active, picked.tolist(), strict=True)):
                    new[row].append(token)
                    done = token in eos_ids or (
                        window > 4 and any(s in tok.decode(new[row][-window:]) for s in batch[0].stop)
                    )
                    if not done:
                        keep.append(j)
                if not keep:
                    break
                if len(keep) < len(active):
                    index = torch.tensor(keep, device=model.device)
                    cache.batch_select_indices(index)
                    mask, picked = mask[index], picked[index]
                    active = [active[j] for j in keep]
                mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
                out = model(
                    input_ids=picked[:, None],
                    attention_mask=mask,
                    **{cache_arg: cache},
                    position_ids=mask.sum(-1, keepdim=True) - 1,
                    use_cache=True,
                )
                logits = out.logits[:, -1, :]
        share = (time.perf_counter() - start) / len(batch)
        n_prompt = enc["attention_mask"].sum(dim=1)[rows_of].tolist()
        results = []
        for req, ids, n_in in zip(batch, new, n_prompt, strict=True):
            answer, n_gen, how = finish_row(ids, tok, req.stop, eos_ids, tok.pad_token_id)
            results.append(Result(req, answer, int(n_in), n_gen, how, share))
        return results

    def _eos_ids(self) -> set[int]:
        """End-of-sequence ids from the model's generation config and the tokenizer."""
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids
