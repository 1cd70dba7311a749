"""Token callbacks of the decode loop: what each row decoded at a step, as text safe to show."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..retrieval.prompts import clean_answer, cut_at_stop
from .types import Request, Result

CANCELLED = "cancelled"  # how a row ends when the callback stops the call


@dataclass(frozen=True)
class TokenEvent:
    """One row's step: the token drawn, the text it made visible, and the result if the row ended."""

    request: Request
    token: int | None  # None: the row was cancelled between steps
    text: str  # new text: whole characters only, never a stop string or the start of one
    logits: object  # the float32 logits [vocab] the token was drawn from (None if no token)
    result: Result | None = None  # set on the row's last event


OnTokens = Callable[[list[TokenEvent]], "bool | None"]  # return False to stop every row


class TextStream:
    """What of a row's answer has been shown: each new piece extends it, and the pieces of a finished
    row join into its saved answer (stripped, cut at its stop) whenever decoding allows it."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.shown = ""

    def visible(self, text: str) -> str:
        """The part of a running row's decoded text that can be shown for good."""
        text, _ = cut_at_stop(text, self.stops)
        text = text.rstrip("\ufffd")  # an incomplete UTF-8 character decodes as U+FFFD
        held = max((n for s in self.stops for n in range(1, len(s)) if text.endswith(s[:n])), default=0)
        # trailing spaces and backticks wait: the saved answer is stripped (and loses URIAL's fence)
        return text[: len(text) - held].strip().rstrip("`").rstrip()

    def piece(self, text: str, final: bool = False) -> str:
        """The new text to show after decoding `text` (the row's whole answer so far)."""
        now = clean_answer(text, self.stops)[0] if final else self.visible(text)
        if not now.startswith(self.shown):
            return ""  # decoding rewrote shown text (rare): wait; the result holds the answer
        new, self.shown = now[len(self.shown) :], now
        return new
