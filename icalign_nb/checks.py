"""The checks of settings, used by every settings object's `__post_init__`: a number that is not finite or
not in its range, a device or an endpoint URL that cannot work, is one line naming the setting, wherever
it came from (a command-line option, a notebook parameter, a study file or code)."""

from __future__ import annotations

import math
import re
from urllib.parse import urlparse

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


def device_name(name: str, value: str | None) -> None:
    """Refuse a device torch would not know (cpu, cuda, cuda:N, mps); None passes (the default device)."""
    if value is not None and not re.fullmatch(r"cpu|cuda(:\d+)?|mps", value):
        raise UserError(f"{name} must be cpu, cuda, cuda:N or mps (got {value!r})")


def endpoint_url(name: str, value: str | None) -> None:
    """Refuse an endpoint that is not an http(s) URL with a host; None passes (the environment's)."""
    if value is not None:
        parts = urlparse(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UserError(f"{name} must be an http:// or https:// URL (got {value!r})")
