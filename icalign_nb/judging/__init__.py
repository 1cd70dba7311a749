"""Judging: judge specs and prompts, comparisons, reply parsing, the judgment cache, the judge
backends (API, local model, embedding proxy, recorded replies), judging a run, reading verdicts."""
