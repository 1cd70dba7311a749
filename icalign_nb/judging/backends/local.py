"""A local transformers chat model as a pairwise judge (for a capable model on a GPU).

The judge prompt goes through the model's chat template (system + user); a tokenizer without
one gets the two messages joined by blank lines. Decoding follows the judge spec: sampling at
its temperature (greedy at 0), at most `max_tokens` new tokens. Small models rarely follow the
two-score format; such replies are kept as `invalid` with their raw text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...files import sha256_text
from ..comparisons import Comparison, Reply
from ..parse import parse_scores
from ..prompts import JudgePrompt
from ..spec import JudgeSpec

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class LocalJudge:
    """Pairwise judging with a local causal LM, batched, left-padded."""

    spec: JudgeSpec
    prompt: JudgePrompt
    batch_size: int = 4
    seed: int = 0
    _model: PreTrainedModel | None = field(default=None, init=False, repr=False)
    _tokenizer: PreTrainedTokenizerBase | None = field(default=None, init=False, repr=False)

    def prompt_hash(self, c: Comparison) -> str:
        """Hash of the messages given to the model."""
        return sha256_text(
            json.dumps(self.prompt.messages(c.question, c.answer_1, c.answer_2), ensure_ascii=False)
        )

    def load(self) -> None:
        """Load tokenizer and model once."""
        if self._model is not None:
            return
        from ...models.loading import load_model, load_tokenizer

        self._tokenizer = load_tokenizer(self.spec.model)
        self._model = load_model(self.spec.model, device=self.spec.device)

    def render(self, c: Comparison) -> str:
        """The prompt text: the chat template applied to the judge messages."""
        messages = self.prompt.messages(c.question, c.answer_1, c.answer_2)
        if getattr(self._tokenizer, "chat_template", None):
            return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages) + "\n\n"

    def judge(self, items: Sequence[Comparison], done: Callable[[int, Reply], None]) -> None:
        """Judge items batch by batch; `done(index, reply)` after each batch's items."""
        if not items:
            return
        import torch

        self.load()
        torch.manual_seed(self.seed)
        sample = self.spec.temperature > 0
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            texts = [self.render(item) for item in chunk]
            batch = self._tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            batch = batch.to(self._model.device)
            with torch.inference_mode():
                out = self._model.generate(
                    **batch,
                    max_new_tokens=self.spec.max_tokens,
                    do_sample=sample,
                    temperature=self.spec.temperature if sample else None,
                    top_p=1.0 if sample else None,
                    top_k=None,
                    pad_token_id=self._tokenizer.pad_token_id,
                )
            new = out[:, batch["input_ids"].shape[1] :]
            for offset, ids in enumerate(new):
                text = self._tokenizer.decode(ids, skip_special_tokens=True)
                done(start + offset, Reply(text, parse_scores(text)))
