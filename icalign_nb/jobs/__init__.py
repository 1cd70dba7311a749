"""Whole jobs over the stages: the notebooks (the main job, run by papermill) and the benchmarks
that time the package's paths against reference-style ones."""
