"""A 2-D map of a demonstration pool: UMAP of its embeddings, clusters found in them, and cluster names.

Clusters come from k-means on L2-normalised embeddings (k chosen by silhouette unless fixed); each
cluster is named by its most frequent pool category (when the pool has categories) and by the terms
that are most typical of its prompts compared with the other clusters (class-based TF-IDF).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from ..cache import cache_path, cache_root, load_arrays
from ..checks import in_range
from ..files import atomic_write_bytes
from ..retrieval.embeddings import normalize_rows


@dataclass(frozen=True)
class MapConfig:
    """How the map is drawn from the embeddings."""

    n_clusters: int | None = None  # None: chosen by silhouette between min_clusters and max_clusters
    min_clusters: int = 4  # smallest k tried
    max_clusters: int = 14  # largest k tried
    n_neighbors: int = 15  # UMAP neighbourhood size
    min_dist: float = 0.15  # UMAP minimum spacing of points
    n_terms: int = 2  # typical terms in a cluster's name
    seed: int = 0  # UMAP and k-means seed

    def __post_init__(self) -> None:
        in_range("n_clusters", self.n_clusters, at_least=1, whole=True)
        in_range("min_clusters", self.min_clusters, at_least=2, whole=True)
        in_range("max_clusters", self.max_clusters, at_least=self.min_clusters, whole=True)
        in_range("n_neighbors", self.n_neighbors, at_least=2, whole=True)
        in_range("min_dist", self.min_dist, at_least=0)
        in_range("n_terms", self.n_terms, at_least=0, whole=True)
        in_range("seed", self.seed, at_least=0, below=2**32, whole=True)  # what UMAP and k-means take


@dataclass
class DemoMap:
    """Pool demos placed on a plane, with cluster labels and names; places new queries too."""

    ids: list[str]
    xy: np.ndarray
    cluster: np.ndarray
    names: list[str]
    categories: list[str]
    config: MapConfig
    unit: np.ndarray = field(repr=False, default=None)  # L2-normalised demo embeddings
    centres: np.ndarray = field(repr=False, default=None)  # k-means centres (on the unit vectors)

    def frame(self) -> pl.DataFrame:
        """One row per demo: id, x, y, cluster number and name, category."""
        return pl.DataFrame(
            {
                "id": self.ids,
                "x": self.xy[:, 0],
                "y": self.xy[:, 1],
                "cluster": self.cluster.tolist(),
                "cluster_name": [self.names[c] for c in self.cluster],
                "category": self.categories,
            }
        )

    def place(self, embeddings: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Map positions (similarity-weighted mean of the k most similar demos) and nearest clusters."""
        unit = normalize_rows(np.asarray(embeddings, dtype=np.float64))
        sims = unit @ self.unit.T
        k = min(k, sims.shape[1])
        top = np.argsort(-sims, axis=1)[:, :k]
        weights = np.clip(np.take_along_axis(sims, top, axis=1), 1e-6, None) ** 4
        xy = (weights[:, :, None] * self.xy[top]).sum(axis=1) / weights.sum(axis=1, keepdims=True)
        dist = ((unit[:, None, :] - self.centres[None, :, :]) ** 2).sum(axis=2)
        return xy, dist.argmin(axis=1)

    def positions(self, ids: list[str]) -> np.ndarray:
        """Map coordinates of pool demos by id."""
        index = {d: i for i, d in enumerate(self.ids)}
        return self.xy[[index[d] for d in ids]]


def numba_cache_env() -> dict[str, str]:
    """Environment that keeps numba's compiled UMAP code in the user cache (later runs start fast)."""
    folder = cache_root() / "numba"
    folder.mkdir(parents=True, exist_ok=True)
    return {"NUMBA_CACHE_DIR": str(folder)}


def choose_k(unit: np.ndarray, config: MapConfig) -> int:
    """The number of clusters: fixed, or the best silhouette over the configured range."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = unit.shape[0]
    if config.n_clusters is not None:
        return max(1, min(config.n_clusters, n))
    hi = min(config.max_clusters, n - 1)
    lo = min(config.min_clusters, hi)
    if hi < 2:
        return 1
    best, best_k = -2.0, lo
    for k in range(max(2, lo), hi + 1):
        labels = KMeans(k, n_init=4, random_state=config.seed).fit_predict(unit)
        score = silhouette_score(unit, labels, sample_size=min(n, 2000), random_state=config.seed)
        if score > best:
            best, best_k = score, k
    return best_k


# Words that ask for something rather than say what about: never a cluster's name.
REQUEST_WORDS = frozenset(
    """does make way provide explain give list using use like help want need good best tell just know
    write short simple following describe create ask new thing things people""".split()  # noqa: SIM905
)


def typical_terms(
    texts: list[str], labels: np.ndarray, k: int, n_terms: int, min_share: float = 0.15
) -> list[list[str]]:
    """Words that name each cluster: found in at least `min_share` of its texts (and in two or more),
    ranked by how much more often they occur inside the cluster than outside it."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    vec = CountVectorizer(
        stop_words=sorted(ENGLISH_STOP_WORDS | REQUEST_WORDS),
        token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]{2,}\b",
        binary=True,
    )
    try:
        present = vec.fit_transform(texts).toarray().astype(bool)
    except ValueError:  # no usable words at all
        return [[] for _ in range(k)]
    vocab = np.array(vec.get_feature_names_out())
    out = []
    for c in range(k):
        inside, outside = present[labels == c], present[labels != c]
        share_in = inside.mean(axis=0) if len(inside) else np.zeros(len(vocab))
        share_out = outside.mean(axis=0) if len(outside) else np.zeros(len(vocab))
        score = share_in * np.log((share_in + 1e-3) / (share_out + 1e-3))
        score[(share_in < min_share) | (inside.sum(axis=0) < 2)] = -np.inf
        best = [i for i in np.argsort(-score)[:n_terms] if np.isfinite(score[i])]
        out.append(vocab[best].tolist())
    return out


def cluster_names(
    texts: list[str], categories: list[str], labels: np.ndarray, k: int, n_terms: int
) -> list[str]:
    """A readable name per cluster: its most frequent category with its share (when the pool has
    categories) and the words most of its texts share, e.g. "planning 83%: plan, week"."""
    terms = typical_terms(texts, labels, k, n_terms)
    has_categories = len({c for c in categories if c}) > 1
    names = []
    for c in range(k):
        words = ", ".join(terms[c])
        if has_categories:
            counts = Counter(cat for cat, lab in zip(categories, labels, strict=True) if lab == c and cat)
            top, count = counts.most_common(1)[0] if counts else ("mixed", 0)
            head = f"{top} {100 * count / max(1, sum(counts.values())):.0f}%"
            names.append(f"{head}: {words}" if words else head)
        else:
            names.append(words or f"cluster {c + 1}")
    # the same name twice would make the legend ambiguous
    seen: Counter[str] = Counter()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return unique


def _cache_path(pool: pl.DataFrame, embeddings: np.ndarray, config: MapConfig) -> Path:
    """Where the map of these demos, embeddings and settings is kept."""
    digest = hashlib.sha256(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes()).hexdigest()
    return cache_path(
        "maps", *pool["id"].to_list(), *pool["prompt"].to_list(), repr(config), digest, suffix=".npz"
    )


def build_demo_map(
    pool: pl.DataFrame, embeddings: np.ndarray, config: MapConfig | None = None, use_cache: bool = True
) -> DemoMap:
    """Fit UMAP and k-means on the pool's embeddings and name the clusters (cached on disk)."""
    config = config or MapConfig()
    unit = normalize_rows(embeddings).astype(np.float64)
    path = _cache_path(pool, embeddings, config)
    saved = load_arrays(path, ("xy", "cluster", "names", "centres")) if use_cache and path.exists() else None
    if saved is not None:
        return DemoMap(
            pool["id"].to_list(),
            saved["xy"],
            saved["cluster"],
            saved["names"].tolist(),
            pool["category"].to_list(),
            config,
            unit,
            saved["centres"],
        )
    os.environ.setdefault("NUMBA_CACHE_DIR", numba_cache_env()["NUMBA_CACHE_DIR"])
    import umap
    from sklearn.cluster import KMeans

    k = choose_k(unit, config)
    kmeans = KMeans(k, n_init=8, random_state=config.seed).fit(unit)
    labels = np.asarray(kmeans.labels_)
    reducer = umap.UMAP(
        n_neighbors=min(config.n_neighbors, max(2, pool.height - 1)),
        min_dist=config.min_dist,
        metric="cosine",
        random_state=config.seed,
        n_jobs=1,
    )
    xy = np.asarray(reducer.fit_transform(embeddings), dtype=np.float64)
    names = cluster_names(pool["prompt"].to_list(), pool["category"].to_list(), labels, k, config.n_terms)
    demo_map = DemoMap(
        pool["id"].to_list(),
        xy,
        labels,
        names,
        pool["category"].to_list(),
        config,
        unit,
        kmeans.cluster_centers_,
    )
    if use_cache:
        buf = io.BytesIO()
        np.savez(buf, xy=xy, cluster=labels, names=np.array(names), centres=kmeans.cluster_centers_)
        atomic_write_bytes(path, buf.getvalue())
    return demo_map
