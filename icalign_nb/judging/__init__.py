"""Judging: judge specs and prompts, comparisons, reply parsing, the judgment cache, the judge
backends (API, local model, fitted judge, embedding proxy, recorded replies), the fitted judge's
features, labelled verdicts and fit, judging a run, reading verdicts."""
