"""icalign-nb: in-context alignment, from retrieval to win-rate figures."""

__version__ = "0.1.0"
