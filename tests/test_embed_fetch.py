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


def test_data_fetch_fetches_checks_and_says_one_line_per_file(
    file_server, tmp_path, monkeypatch, capsys: pytest.CaptureFixture
):
    from icalign_nb.cli import main

    root, base = file_server
    body = b'{"prompt": "p", "response": "r"}\n'
    (root / "a.jsonl").write_bytes(body)
    digest = hashlib.sha256(body).hexdigest()
    files = {
        "demo/a.jsonl": fetch.RemoteFile("demo/a.jsonl", f"{base}/a.jsonl", digest),
        "demo/gone.jsonl": fetch.RemoteFile("demo/gone.jsonl", "http://127.0.0.1:9/gone.jsonl", digest),
        "other/b.jsonl": fetch.RemoteFile("other/b.jsonl", f"{base}/a.jsonl", "0" * 64),
    }
    monkeypatch.setattr(fetch, "REMOTE_FILES", files)
    monkeypatch.delenv("ICALIGN_DATA_DIR", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("ICALIGN_CACHE", str(tmp_path / "elsewhere"))  # --cache-dir wins; restored after
    assert main(["data", "fetch", "--cache-dir", str(cache)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == f"fetching into {cache / 'data'}" and len(lines) == 4  # a heading, one line per file
    assert lines[1] == "ok   demo/a.jsonl: fetched, sha256 matches the pin"
    assert lines[2].startswith("FAIL demo/gone.jsonl: http://127.0.0.1:9/gone.jsonl: download failed (")
    assert lines[3].startswith("FAIL other/b.jsonl:") and "does not match the pinned" in lines[3]
    assert captured.err.strip().splitlines() == [
        "icalign: error: 2 of 3 file(s) not ready; offline? copy the files into a folder and pass "
        "--data-dir (or ICALIGN_DATA_DIR)"
    ]
    assert (cache / "data" / "demo/a.jsonl").read_bytes() == body
    assert (cache / "data" / "SHA256SUMS").read_text() == f"{digest}  ./demo/a.jsonl\n"
    assert not fetch.complete(cache / "data")
    # by name: only the folder asked for; served from the cache the second time
    (root / "a.jsonl").unlink()
    assert main(["data", "fetch", "demo/a.jsonl", "--cache-dir", str(cache)]) == 0
    assert "ok   demo/a.jsonl: in the cache, sha256 matches" in capsys.readouterr().out
    monkeypatch.setattr(fetch, "REMOTE_FILES", {"demo/a.jsonl": files["demo/a.jsonl"]})
    assert main(["data", "fetch", "demo", "--cache-dir", str(cache)]) == 0 and fetch.complete(cache / "data")
    assert main(["data", "fetch", "nothing"]) == 1
    assert "'nothing' names no public file; folders: demo" in capsys.readouterr().err


def test_data_fetch_checks_a_local_folder_against_the_pins(tmp_path, monkeypatch, capsys):
    from icalign_nb.cli import main

    good, bad = b"good\n", b"changed\n"
    files = {
        "d/good.txt": fetch.RemoteFile(
            "d/good.txt", "http://127.0.0.1:9/x", hashlib.sha256(good).hexdigest()
        ),
        "d/bad.txt": fetch.RemoteFile(
            "d/bad.txt", "http://127.0.0.1:9/y", hashlib.sha256(b"orig\n").hexdigest()
        ),
        "d/none.txt": fetch.RemoteFile("d/none.txt", "http://127.0.0.1:9/z", "1" * 64),
    }
    monkeypatch.setattr(fetch, "REMOTE_FILES", files)
    (tmp_path / "d").mkdir()
    (tmp_path / "d/good.txt").write_bytes(good)
    (tmp_path / "d/bad.txt").write_bytes(bad)
    monkeypatch.setenv("ICALIGN_CACHE", str(tmp_path / "c"))
    assert main(["data", "fetch", "--data-dir", str(tmp_path), "--cache-dir", str(tmp_path / "c")]) == 1
    out = capsys.readouterr()
    assert out.out.splitlines()[1:] == [
        "ok   d/good.txt: sha256 matches",
        f"FAIL d/bad.txt: {tmp_path / 'd/bad.txt'}: sha256 {hashlib.sha256(bad).hexdigest()} does not "
        "match the pin (a changed or broken copy)",
        f"FAIL d/none.txt: not found at {tmp_path / 'd/none.txt'}",
    ]
    assert out.err.strip() == "icalign: error: 2 of 3 file(s) not ready"
    assert not (tmp_path / "c").exists()  # nothing downloaded, nothing cached


def test_data_fetch_mends_a_broken_cached_copy_and_accepts_an_unpinned_file(
    file_server, tmp_path, monkeypatch, capfd: pytest.CaptureFixture
):
    from icalign_nb.cli import main

    root, base = file_server
    pinned, free = b"pinned\n", b"free\n"
    (root / "a.txt").write_bytes(pinned)
    (root / "u.txt").write_bytes(free)
    files = {
        "d/a.txt": fetch.RemoteFile("d/a.txt", f"{base}/a.txt", hashlib.sha256(pinned).hexdigest()),
        "d/u.txt": fetch.RemoteFile("d/u.txt", f"{base}/u.txt", None),
        "d/x.txt": fetch.RemoteFile("d/x.txt", f"{base}/a.txt", "0" * 64),
    }
    monkeypatch.setattr(fetch, "REMOTE_FILES", files)
    monkeypatch.delenv("ICALIGN_DATA_DIR", raising=False)
    data = tmp_path / "cache" / "data"
    (data / "d").mkdir(parents=True)
    (data / "d/a.txt").write_bytes(b"pinn")  # a copy cut short
    assert main(["data", "fetch", "--cache-dir", str(tmp_path / "cache")]) == 1
    out, err = capfd.readouterr()
    assert out.splitlines()[1:] == [
        "ok   d/a.txt: fetched again (the cached copy was broken), sha256 matches the pin",
        f"ok   d/u.txt: fetched, not pinned (sha256 {hashlib.sha256(free).hexdigest()})",
        f"FAIL d/x.txt: {base}/a.txt: sha256 {hashlib.sha256(pinned).hexdigest()} does not match the pinned "
        + "0" * 64,
    ]
    assert err.splitlines() == [
        "icalign: error: 1 of 3 file(s) not ready; offline? copy the files into a folder "
        "and pass --data-dir (or ICALIGN_DATA_DIR)"
    ]  # nothing else on stderr
    assert (data / "d/a.txt").read_bytes() == pinned and (data / "d/u.txt").read_bytes() == free
    assert sorted(p.name for p in (data / "d").iterdir()) == ["a.txt", "u.txt"]  # no temporary file left
    assert (data / "SHA256SUMS").read_text() == f"{hashlib.sha256(pinned).hexdigest()}  ./d/a.txt\n"
