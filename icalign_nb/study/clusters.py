"""Which topic cluster of the pool map each query of a study falls in."""

from __future__ import annotations

import polars as pl

from ..analysis.poolmap import build_demo_map
from ..data.loaders import load_pool
from ..retrieval.embeddings import embed_pool
from ..retrieval.encoders import Encoder
from ..retrieval.settings import load_queries
from .study import Study


def query_clusters(study: Study) -> pl.DataFrame:
    """`query_id, cluster`: the pool-map cluster each query of the study falls in (nearest centre)."""
    pool, encoder = load_pool(study.pool, study.data_dir), Encoder(study.encoder).load()
    demo_map = build_demo_map(pool, embed_pool(pool, encoder))
    queries = load_queries(study.retrieval(), study.data_dir)
    _, nearest = demo_map.place(encoder.encode(queries["prompt"].to_list()))
    return pl.DataFrame({"query_id": queries["id"], "cluster": [demo_map.names[c] for c in nearest]})
