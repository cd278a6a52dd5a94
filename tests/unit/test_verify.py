"""`make verify` finds every kind of damage and names it; `make gc` clears cut-off writes."""

import hashlib
import os
import time

from pipelines import deploy, gc
from pipelines.store import ArtifactStore, Manifest
from pipelines.verify import verify_store


def _healthy_store(root) -> tuple[ArtifactStore, dict]:
    store = ArtifactStore(root)
    weights = store.put_bytes(b"weights " * 100)
    onnx = store.put_bytes(b"onnx model " * 100)
    manifest = store.put_manifest(Manifest("trained_weights", {"model.onnx": onnx,
                                                               "weights": weights}, {}))
    store.record("m/trained_weights", "b3:aa", {"content_hash": manifest, "metadata": {},
                                                "checks": []})
    other = store.put_bytes(b"a card")
    store.record("m/model_card", "b3:bb", {"content_hash": other, "metadata": {}, "checks": []})
    variant = deploy.VariantFile(content_hash=onnx, bytes=1100,
                                 sha256=hashlib.sha256(b"onnx model " * 100).hexdigest())
    model = deploy.DeployedModel(version=1, trained_weights=manifest, quantized_weights=manifest,
                                 model_card=other, variants={"int8": variant})
    deploy.deploy(store, "m", model, canary_share=0.0)
    return store, {"weights": weights, "card": other, "manifest": manifest}


def _path(store, content_hash):
    return next(p for p, h, _ in store.object_files() if h == content_hash)


def _age(path, seconds):
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_a_healthy_store_verifies(tmp_path):
    store, _ = _healthy_store(tmp_path / "store")
    report = verify_store(store)
    assert report.ok, [p.line() for p in report.problems]
    assert (report.memo_entries, report.history_entries) == (2, 1)
    assert report.objects == 4


def test_verify_names_a_flipped_byte_a_missing_object_and_a_truncated_entry(tmp_path):
    store, hashes = _healthy_store(tmp_path / "store")
    flipped = _path(store, hashes["weights"])
    data = bytearray(open(flipped, "rb").read())
    data[3] ^= 0x01
    open(flipped, "wb").write(bytes(data))
    os.remove(_path(store, hashes["card"]))
    entry = tmp_path / "store" / "records" / "deployments" / "m" / "00000001.json"
    entry.write_bytes(entry.read_bytes()[:20])
    leftover = tmp_path / "store" / "keys" / "m" / "trained_weights" / ".tmp-0123abcd"
    leftover.write_bytes(b"half a pointer")
    _age(leftover, 7200)

    lines = [p.line() for p in verify_store(store).problems]
    text = "\n".join(lines)
    assert any(hashes["weights"].split(":")[1] in line and "does not hash to its name" in line
               for line in lines), text
    assert any("m/model_card" in line and hashes["card"] in line and "not in the store" in line
               for line in lines), text
    assert any("00000001.json" in line and "unreadable" in line for line in lines), text
    assert any(".tmp-0123abcd" in line and "make gc removes it" in line for line in lines), text
    assert len(lines) == 4, text


def test_verify_names_a_stale_head_and_a_changed_deployed_model(tmp_path):
    store, _ = _healthy_store(tmp_path / "store")
    (tmp_path / "store" / "records" / "deployments" / "m" / "head.json").unlink()
    state = deploy.current(store, "m")
    onnx = _path(store, state.stable.variants["int8"].content_hash)
    open(onnx, "ab").write(b"!")
    lines = [p.line() for p in verify_store(store).problems]
    assert any("head.json" in line and "does not match the history" in line for line in lines)
    assert any("v1 (stable) int8" in line and "sha256" in line for line in lines), lines


def test_gc_removes_old_temp_files_of_cut_off_writes_and_keeps_young_ones(tmp_path):
    store, _ = _healthy_store(tmp_path / "store")
    base = tmp_path / "store"
    old = [base / "objects" / "tmp" / ".tmp-old1", base / "keys" / "m" / "model_card" / ".tmp-old2",
           base / "records" / "deployments" / "m" / "00000002.json.tmp-old3"]
    young = base / "records" / "deployments" / "m" / "00000002.json.tmp-young"
    for path in [*old, young]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    for path in old:
        _age(path, 7200)
    plan = gc.plan(store, roots=[], grace_s=3600)
    assert sorted(plan.temp) == sorted(str(p) for p in old)
    gc.sweep(store, plan)
    assert not any(p.exists() for p in old) and young.exists()
    assert verify_store(store, grace_s=3600).ok, "a young temp file may be a write in progress"
    assert deploy.current(store, "m").stable.version == 1


def test_frames_are_checked_by_their_logical_hash(tmp_path):
    import pandas as pd

    from pipelines.artifacts import StageResult, save_result

    store = ArtifactStore(tmp_path / "store")
    frame = pd.DataFrame({"age": [39, 50, 38], "sex": ["Male", "Female", None]})
    manifest = save_result(store, StageResult(kind="features", frames={"features": frame}))
    store.record("m/validated_features", "b3:cc", {"content_hash": manifest.content_hash,
                                                   "metadata": {}, "checks": []})
    frame_hash = manifest.files["features"]
    assert frame_hash.startswith("f3:") and manifest.content_hash.startswith("b3:")
    assert verify_store(store).ok
    path = _path(store, frame_hash)
    other = pd.DataFrame({"age": [39, 50, 39], "sex": ["Male", "Female", None]})
    other.to_parquet(path, index=False)  # a valid Parquet file, but not the frame named
    lines = [p.line() for p in verify_store(store).problems]
    assert len(lines) == 1 and frame_hash.split(":")[1] in lines[0], lines


def test_verify_job_fails_naming_the_problem(tmp_path, monkeypatch):
    import dagster as dg

    monkeypatch.setenv("TIDELINE_HOME", str(tmp_path))
    from definitions import build_definitions

    store, hashes = _healthy_store(tmp_path / "store")
    job = build_definitions().resolve_job_def("verify_job")
    assert job.execute_in_process(instance=dg.DagsterInstance.ephemeral()).success
    os.remove(_path(store, hashes["card"]))
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(),
                                    raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    text = failure.step_failure_data.user_failure_data.description
    assert "1 problem " in text and hashes["card"] in text and "not in the store" in text


def test_a_frame_stored_before_frames_had_their_own_prefix_still_verifies(tmp_path):
    import pandas as pd

    from pipelines.artifacts import frame_bytes
    from pipelines.hashing import HASH_PREFIX, hash_frame

    store = ArtifactStore(tmp_path / "store")
    frame = pd.DataFrame({"age": [39, 50]})
    legacy = HASH_PREFIX + hash_frame(frame).split(":")[1]  # as older versions named it
    store.put_bytes(frame_bytes(frame), content_hash=legacy)
    assert verify_store(store).ok
    data = bytearray(open(_path(store, legacy), "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(_path(store, legacy), "wb").write(bytes(data))
    assert not verify_store(store).ok
