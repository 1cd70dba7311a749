"""Pairwise judges: specs, prompts, reply parsing, the judgment cache and the backends (an
OpenAI-compatible endpoint, a local transformers model, the offline embedding proxy)."""
