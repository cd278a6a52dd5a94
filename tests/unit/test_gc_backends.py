"""Garbage collection on every store backend (folder, S3 on moto, lakeFS): what is kept,
what goes, and that a dry plan deletes nothing."""

from pipelines import deploy, gc
from pipelines.store import ArtifactStore, Manifest

OLD_KEY, NEW_KEY = "b3:" + "1" * 64, "b3:" + "2" * 64


def artifact(store, kind: str, payload: bytes) -> tuple[str, str]:
    file_hash = store.put_bytes(payload)
    return store.put_manifest(Manifest(kind, {"data": file_hash}, {})), file_hash


def test_gc_keeps_roots_deployed_and_pinned_and_removes_the_rest(store_root):
    store = ArtifactStore(store_root)
    weights, weights_file = artifact(store, "trained_weights", b"weights v1")
    card, card_file = artifact(store, "model_card", b"card v1")
    deploy.deploy(store, "m", deploy.DeployedModel(version=1, trained_weights=weights,
                                                   quantized_weights="", model_card=card),
                  canary_share=0.0)
    old, old_file = artifact(store, "raw_data", b"rows, first snapshot")
    new, new_file = artifact(store, "raw_data", b"rows, second snapshot")
    store.record("m/raw_data", OLD_KEY, {"content_hash": old, "metadata": {}})
    store.record("m/raw_data", NEW_KEY, {"content_hash": new, "metadata": {}})
    kept_by_pin = store.put_bytes(b"pinned by hand")
    gc.pin(store, kept_by_pin)
    garbage = store.put_bytes(b"written by a run that never recorded it")

    young = gc.plan(store, roots={new})
    assert young.delete == [] and young.young == 3, "inside the grace period nothing goes"

    planned = gc.plan(store, roots={new}, grace_s=0)
    doomed = {path.rsplit("/", 1)[-1] for path in planned.delete}
    assert doomed == {h.split(":")[1] for h in (old, old_file, garbage)}
    assert [p.rsplit("/", 1)[-1] for p in planned.stale_keys] == [OLD_KEY[3:] + ".json"]
    assert store.has(old) and store.has(garbage), "planning deletes nothing"

    gc.sweep(store, planned)
    store = ArtifactStore(store_root)
    assert not any(store.has(h) for h in (old, old_file, garbage))
    assert all(store.has(h) for h in (weights, weights_file, card, card_file, new, new_file,
                                      kept_by_pin))
    assert store.lookup("m/raw_data", OLD_KEY) is None
    assert store.lookup("m/raw_data", NEW_KEY)["content_hash"] == new
    assert deploy.current(store, "m").stable.trained_weights == weights
