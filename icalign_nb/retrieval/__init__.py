"""Retrieval: encoders and the per-text embedding cache, presets, the retriever (top-k, the paper's
packing, why each candidate was kept or skipped) and the prompt templates."""
