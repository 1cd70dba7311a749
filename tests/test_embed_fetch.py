"""The encoder, its on-disk cache, and pinned fetches over real HTTP."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from icalign_nb.data import fetch, loaders
from icalign_nb.errors import UserError
from icalign_nb.retrieval.embeddings import embed_pool
from icalign_nb.retrieval.encoders import Encoder, resolve_encoder


class CountingEncoder(Encoder):
    """MiniLM that counts how many texts it embeds."""

    calls: int = 0

    def encode(self, texts, sort=True, batch_size=None):
        self.calls += len(texts)
        return super().encode(texts, sort=sort, batch_size=batch_size)


def test_mean_pooling_ignores_padding_and_batches_agree():
    enc = Encoder("minilm")
    texts = ["short", "a much longer sentence about bread baking at home with a sourdough starter"]
    together = enc.encode(texts)
    alone = np.stack([enc.encode([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-5)
    assert together.shape == (2, 384) and together.dtype == np.float32


def test_embeddings_are_cached_per_text_and_keyed_by_the_encoder_content(tmp_path, monkeypatch):
    monkeypatch.setenv("ICALIGN_CACHE", str(tmp_path / "cache"))
    pool = loaders.load_pool("starter").head(12)
    enc = CountingEncoder("minilm")
    first = embed_pool(pool, enc)
    second = embed_pool(pool, enc)
    assert enc.calls == 12 and np.array_equal(first, second)
    changed = pool.with_columns(
        pl.when(pl.int_range(pl.len()) < 3)
        .then("Please: " + pl.col("prompt"))
        .otherwise(pl.col("prompt"))
        .alias("prompt")
    )
    embed_pool(changed, enc)
    assert enc.calls == 15  # only the three changed prompts are new texts
    # the same model installed elsewhere (a moved or rebuilt venv) reads the same cache
    moved = tmp_path / "moved-minilm"
    shutil.copytree(resolve_encoder("minilm"), moved)
    other = CountingEncoder(str(moved))
    assert other.key == enc.key
    assert np.array_equal(embed_pool(pool, other), first) and other.calls == 0
    assert CountingEncoder("minilm", max_length=64).key != enc.key


@pytest.fixture()
def file_server(tmp_path):
    """A local HTTP server over a folder, on 127.0.0.1."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_downloads_verifies_and_caches(file_server, tmp_path, monkeypatch):
    root, base = file_server
    body = b'{"prompt": "p", "response": "r"}\n'
    (root / "pool.jsonl").write_bytes(body)
    good = fetch.RemoteFile("demo/pool.jsonl", f"{base}/pool.jsonl", hashlib.sha256(body).hexdigest())
    bad = fetch.RemoteFile("demo/bad.jsonl", f"{base}/pool.jsonl", "0" * 64)
    monkeypatch.setitem(fetch.REMOTE_FILES, good.relpath, good)
    monkeypatch.setitem(fetch.REMOTE_FILES, bad.relpath, bad)
    monkeypatch.setenv("ICALIGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ICALIGN_DATA_DIR", raising=False)
    path = fetch.fetch("demo/pool.jsonl")
    assert path.read_bytes() == body and path.is_relative_to(tmp_path / "cache")
    with pytest.raises(UserError, match="does not match the pinned"):
        fetch.fetch("demo/bad.jsonl")
    assert not (tmp_path / "cache" / "data" / "demo" / "bad.jsonl").exists()
    (root / "pool.jsonl").unlink()  # a second fetch is served from the cache
    assert fetch.fetch("demo/pool.jsonl") == path
    with pytest.raises(UserError) as err:
        fetch.fetch("demo/bad.jsonl")
    assert "download failed" in str(err.value) and "\n" not in str(err.value)


def test_offline_fetch_says_how_to_point_at_a_folder(tmp_path, monkeypatch):
    gone = fetch.RemoteFile("demo/x.jsonl", "http://127.0.0.1:9/x.jsonl", None)
    monkeypatch.setitem(fetch.REMOTE_FILES, gone.relpath, gone)
    monkeypatch.setenv("ICALIGN_CACHE", str(tmp_path))
    monkeypatch.delenv("ICALIGN_DATA_DIR", raising=False)
    with pytest.raises(UserError, match="ICALIGN_DATA_DIR"):
        fetch.fetch("demo/x.jsonl")


def test_local_reference_files_match_their_pins(shared_data: Path):
    assert fetch.verify(
        shared_data / "paper_release/davinci003_results.jsonl", "paper_release/davinci003_results.jsonl"
    )
