"""The one check of numeric settings, used by every settings object's `__post_init__`: a value that is
not a finite number in its range is one line naming the setting, wherever it came from (a command-line
option, a notebook parameter, a study file or code)."""

from __future__ import annotations

import math

from .errors import UserError


def in_range(
    name: str,
    value: float | int | None,
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
    whole: bool = False,
) -> None:
    """Refuse `value` unless it is a finite number (whole, if asked) inside the given bounds; None passes."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{name} must be a number (got {value!r})")
    if not math.isfinite(value):
        raise UserError(f"{name} must be a finite number (got {value})")
    if whole and value != int(value):
        raise UserError(f"{name} must be a whole number (got {value})")
    bounds = []
    if at_least is not None and value < at_least:
        bounds.append(f">= {at_least:g}")
    if above is not None and value <= above:
        bounds.append(f"> {above:g}")
    if at_most is not None and value > at_most:
        bounds.append(f"<= {at_most:g}")
    if below is not None and value >= below:
        bounds.append(f"< {below:g}")
    if bounds:
        raise UserError(f"{name} must be {' and '.join(bounds)} (got {value:g})")
