"""Data in: pools, evaluation sets and baseline answers (built-in or files), the paper's release, and
pinned public files fetched into the cache or read from a local data directory."""
