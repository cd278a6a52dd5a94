import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipelines.hashing import hash_bytes
from pipelines.store import ArtifactNotFound, ArtifactStore, Manifest

REPO = Path(__file__).resolve().parents[2]


def test_put_get_and_manifest(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    h = store.put_bytes(b"hello")
    assert h == hash_bytes(b"hello") and store.get_bytes(h) == b"hello"
    manifest = Manifest("kind", {"greeting": h}, {"n": 1})
    mh = store.put_manifest(manifest)
    assert mh == manifest.content_hash
    assert store.get_manifest(mh) == manifest
    with pytest.raises(ArtifactNotFound):
        store.put_manifest(Manifest("kind", {"x": hash_bytes(b"absent")}, {}))


def test_lookup_miss_hit_and_missing_content(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    assert store.lookup("asset", "b3:00") is None
    h = store.put_bytes(b"content")
    store.record("asset", "b3:01", {"content_hash": h, "metadata": {}})
    assert store.lookup("asset", "b3:01")["content_hash"] == h
    os.remove(store.local_path(h))
    assert store.lookup("asset", "b3:01") is None, "a pointer to missing content is a miss"


def test_stream_copy_hashes_the_bytes(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    with open(src, "rb") as f:
        h = store.put_stream(f)
    assert h == hash_bytes(src.read_bytes())
    assert store.local_path(h).read_bytes() == src.read_bytes()
    assert not list((tmp_path / "store" / "objects" / "tmp").iterdir())


KILLER = textwrap.dedent("""
    import os, signal, sys
    from pipelines.store import ArtifactStore
    store = ArtifactStore(sys.argv[1])
    def die(path, data):
        os.kill(os.getpid(), signal.SIGKILL)
    store._write_pointer = die
    h = store.put_bytes(b"payload")
    store.record("asset", "b3:abcd", {"content_hash": h, "metadata": {}})
""")


def test_sigkill_between_content_and_pointer_leaves_no_artifact(tmp_path):
    root = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-c", KILLER, str(root)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL
    store = ArtifactStore(root)
    assert store.lookup("asset", "b3:abcd") is None
    assert not (root / "keys").exists() or not any((root / "keys").rglob("*.json"))
    h = store.put_bytes(b"payload")
    store.record("asset", "b3:abcd", {"content_hash": h, "metadata": {}})
    assert store.lookup("asset", "b3:abcd")["content_hash"] == h


def test_interrupted_object_write_is_invisible(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    h = hash_bytes(b"x" * 10)
    real_replace = os.replace

    def crash(src, dst):
        raise KeyboardInterrupt

    os.replace = crash
    try:
        with pytest.raises(KeyboardInterrupt):
            store.put_bytes(b"x" * 10)
    finally:
        os.replace = real_replace
    assert not store.has(h)
    assert store.put_bytes(b"x" * 10) == h and store.has(h)
