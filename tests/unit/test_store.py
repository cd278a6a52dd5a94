"""The artifact store, on a local folder, on S3 (moto's server on loopback, a real
S3-compatible HTTP endpoint) and on a lakeFS branch (a real server when LAKEFS_ENDPOINT is
set, else the stand-in): the same tests, atomicity and concurrency included."""

import io
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


def object_path(store, content_hash):
    return next(p for p, h, _ in store.object_files() if h == content_hash)


def test_put_get_and_manifest(store_root):
    store = ArtifactStore(store_root)
    h = store.put_bytes(b"hello")
    assert h == hash_bytes(b"hello") and store.get_bytes(h) == b"hello"
    manifest = Manifest("kind", {"greeting": h}, {"n": 1})
    mh = store.put_manifest(manifest)
    assert mh == manifest.content_hash
    assert store.get_manifest(mh) == manifest
    with pytest.raises(ArtifactNotFound):
        store.put_manifest(Manifest("kind", {"x": hash_bytes(b"absent")}, {}))


def test_lookup_miss_hit_and_missing_content(store_root):
    store = ArtifactStore(store_root)
    assert store.lookup("asset", "b3:00") is None
    h = store.put_bytes(b"content")
    store.record("asset", "b3:01", {"content_hash": h, "metadata": {}})
    assert store.lookup("asset", "b3:01")["content_hash"] == h
    store.remove(object_path(store, h))
    assert store.lookup("asset", "b3:01") is None, "a pointer to missing content is a miss"


def test_stream_copy_hashes_the_bytes(store_root, tmp_path):
    store = ArtifactStore(store_root)
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    with open(src, "rb") as f:
        h = store.put_stream(f)
    assert h == hash_bytes(src.read_bytes())
    assert store.get_bytes(h) == src.read_bytes()
    assert all(content is not None for _, content, _ in store.object_files()), "no temp left"


def test_records_are_create_once(store_root):
    store = ArtifactStore(store_root)
    store.create_record("deployments/m/00000001", {"a": 1})
    with pytest.raises(FileExistsError):
        store.create_record("deployments/m/00000001", {"a": 2})
    assert store.read_record("deployments/m/00000001") == {"a": 1}
    assert store.list_records("deployments/m") == ["deployments/m/00000001"]
    assert store.record_folders("deployments") == ["m"]


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


def test_sigkill_between_content_and_pointer_leaves_no_artifact(store_root):
    proc = subprocess.run([sys.executable, "-c", KILLER, store_root], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL
    store = ArtifactStore(store_root)
    assert store.lookup("asset", "b3:abcd") is None
    assert store.memo_files() == []
    h = store.put_bytes(b"payload")
    store.record("asset", "b3:abcd", {"content_hash": h, "metadata": {}})
    assert store.lookup("asset", "b3:abcd")["content_hash"] == h


class _CutOff(io.BytesIO):
    """An upload body that dies after its first block has gone out on the wire."""

    def read(self, n=-1):
        if self.tell() > 0:
            raise KeyboardInterrupt
        return super().read(4096)


def test_interrupted_object_write_is_invisible(store_root, monkeypatch):
    store = ArtifactStore(store_root)
    payload = b"x" * 100_000
    h = hash_bytes(payload)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        if store.local:
            m.setattr(os, "replace", crash)
        elif store.atomic_puts:  # lakeFS: one upload, cut off half-way through the body
            import lakefs.object

            upload = lakefs.object.ObjectWriter._upload_raw

            def cut_off(writer):
                writer._fd.seek(0)
                writer._fd = _CutOff(writer._fd.read())
                return upload(writer)

            m.setattr(lakefs.object.ObjectWriter, "_upload_raw", cut_off)
        else:
            m.setattr(store.fs, "mv", crash)
        with pytest.raises(KeyboardInterrupt):
            store.put_bytes(payload)
    assert not store.has(h)
    assert store.put_bytes(payload) == h and store.has(h)
    assert store.get_bytes(h) == payload


WRITER = textwrap.dedent("""
    import sys
    from pipelines.store import ArtifactStore, Manifest
    store = ArtifactStore(sys.argv[1])
    payload = bytes(range(256)) * 8192  # 2 MiB, the same in every process
    for i in range(5):
        h = store.put_bytes(payload)
        m = store.put_manifest(Manifest("k", {"data": h}, {"i": 0}))
        store.record("asset", "b3:" + "7" * 64, {"content_hash": m, "metadata": {}})
    print(m)
""")


def test_two_processes_writing_the_same_recipe_key(store_root):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, store_root], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs) and outs[0] == outs[1]
    store = ArtifactStore(store_root)
    record = store.lookup("asset", "b3:" + "7" * 64)
    assert record["content_hash"] == outs[0]
    manifest = store.get_manifest(record["content_hash"])
    assert store.get_bytes(manifest.files["data"]) == bytes(range(256)) * 8192
    assert len(store.object_files()) == 2, "one data object and one manifest, no temp left"


RACER = textwrap.dedent("""
    import sys, time
    from pipelines.store import ArtifactStore
    store = ArtifactStore(sys.argv[1])
    while time.time() < float(sys.argv[2]):
        time.sleep(0.001)
    try:
        store.create_record("deployments/m/00000007", {"writer": sys.argv[3]})
        print("won")
    except FileExistsError:
        print("lost")
""")


def test_racing_processes_create_a_record_once(store_root):
    """Conditional writes (If-None-Match on S3 and lakeFS, link on a folder): of writers that
    race for one history entry, exactly one wins and nobody's entry is overwritten."""
    import time

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.time() + 4
    procs = [subprocess.Popen([sys.executable, "-c", RACER, store_root, str(start), str(i)],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
             for i in range(4)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert sorted(outs) == ["lost", "lost", "lost", "won"], outs
    winner = str(outs.index("won"))
    assert ArtifactStore(store_root).read_record("deployments/m/00000007") == {"writer": winner}
