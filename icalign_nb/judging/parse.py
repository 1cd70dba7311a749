"""Reading two scores out of a judge's reply, and turning scores into a verdict.

The contract (the paper's and the project's judge prompts): the first line of the reply holds
two scores, Assistant 1's then Assistant 2's. Replies seen in the wild deviate, so the parser
also accepts `8.5 9`, `8/10 9/10`, `(8, 9)`, `[8, 9]`, `Assistant 1: 8 Assistant 2: 9`, a
score line preceded by blank lines or a `Scores:` label, and as a last resort the labelled
`Assistant 1 ... N` / `Assistant 2 ... N` pair anywhere in the reply. A reply with no
readable pair of scores is `invalid` (kept with its raw text, counted, never dropped).
"""

from __future__ import annotations

import re

VERDICTS = ("win", "draw", "lose", "invalid")

_NUMBER = r"(\d+(?:\.\d+)?)"
# "8/10" -> 8; the denominator is not a score.
_FRACTION = re.compile(_NUMBER + r"\s*/\s*\d+(?:\.\d+)?")
# "Assistant 1", "Assistant 2", "Answer 1": labels whose digits are not scores.
_LABEL = re.compile(r"\b(?:assistant|answer|response)\s*[#]?\s*([12])\b", re.IGNORECASE)
_NUM = re.compile(r"(?<![\w.])" + _NUMBER + r"(?!\w|\.\d)")
# "Assistant 1 ... 8" anywhere in the reply (the fallback); {which} is 1 or 2.
_LABELLED = r"\b(?:assistant|answer|response)\s*#?\s*{which}\b[^0-9\n]{{0,40}}?" + _NUMBER


def _numbers(line: str) -> list[float]:
    """The score-like numbers of one line, fractions reduced to their numerators, labels removed."""
    line = _FRACTION.sub(lambda m: m.group(1), line)
    line = _LABEL.sub(" ", line)
    return [float(x) for x in _NUM.findall(line)]


def _plausible(a: float, b: float, top: float) -> bool:
    return 0.0 <= a <= top and 0.0 <= b <= top


def parse_scores(raw: str | None, top: float = 10.0) -> tuple[float, float] | None:
    """Assistant 1's and Assistant 2's scores from a reply, or None when it holds no readable pair."""
    if not raw or not raw.strip():
        return None
    lines = [ln for ln in raw.strip().splitlines() if ln.strip()]
    first = _numbers(lines[0])
    if len(first) >= 2 and _plausible(first[0], first[1], top):
        return first[0], first[1]
    for line in lines[:3]:  # "Scores:" on its own line, then the pair
        nums = _numbers(line)
        if len(nums) == 2 and _plausible(nums[0], nums[1], top):
            return nums[0], nums[1]
    one, two = _LABELLED.format(which="1"), _LABELLED.format(which="2")
    m1 = re.search(one, raw, re.IGNORECASE)
    m2 = re.search(two, raw, re.IGNORECASE)
    if m1 and m2:
        a, b = float(m1.group(1)), float(m2.group(1))
        if _plausible(a, b, top):
            return a, b
    return None


def verdict(score_system: float | None, score_baseline: float | None, margin: float = 0.0) -> str:
    """win if the system beats the baseline by more than `margin`, lose if the reverse, else draw."""
    if score_system is None or score_baseline is None:
        return "invalid"
    diff = score_system - score_baseline
    if diff > margin:
        return "win"
    if diff < -margin:
        return "lose"
    return "draw"
