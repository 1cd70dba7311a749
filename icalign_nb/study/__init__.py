"""What a notebook orchestrates over the stages: a `Study` (the experiment's settings), its systems
generated and judged, the job summary and headline, clusters, ablations and the release's tables."""
