"""The one exception type for user mistakes: the CLI prints it as a single line."""

from __future__ import annotations

from os import PathLike


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def where(path: str | PathLike[str], line: int | None = None, field: str | None = None) -> str:
    """Format a location as `file:line: field` for error messages."""
    text = str(path)
    if line is not None:
        text += f":{line}"
    if field is not None:
        text += f": field '{field}'"
    return text


def first_line(problem: BaseException | str, limit: int = 200) -> str:
    """The first line of an exception's message or a text (an exception's type if it says nothing), cut
    to `limit` characters."""
    text = str(problem).strip()
    if not text and isinstance(problem, BaseException):
        text = type(problem).__name__
    return text.splitlines()[0][:limit] if text else ""
