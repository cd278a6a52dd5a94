"""The deployment history: append-only, replayed into a state, safe under concurrency."""

import json
import multiprocessing
import subprocess
import sys

import pytest

from pipelines import deploy
from pipelines.store import ArtifactStore
from tests.conftest import REPO


def model(version: int, **changes) -> deploy.DeployedModel:
    return deploy.DeployedModel(version=version, trained_weights=f"b3:w{version}",
                                quantized_weights=f"b3:q{version}",
                                model_card=f"b3:c{version}", **changes)


def test_deploy_promote_rollback_walks_back(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    outcome, state = deploy.deploy(store, "m", model(1), canary_share=0.1)
    assert outcome == "deployed" and state.stable.version == 1 and state.canary is None
    assert deploy.deploy(store, "m", model(1), canary_share=0.1)[0] == "unchanged"
    _, state = deploy.deploy(store, "m", model(2), canary_share=0.1)
    assert (state.stable.version, state.canary.version) == (1, 2)
    state = deploy.promote(store, "m")
    assert state.stable.version == 2 and state.canary is None and state.previous.version == 1
    _, state = deploy.deploy(store, "m", model(3), canary_share=0.0)  # share 0: straight to stable
    assert [m.version for m in state.stack] == [1, 2, 3]
    assert deploy.alias_targets(state) == {"champion": 3, "previous": 2}

    state = deploy.rollback(store, "m")
    assert state.stable.version == 2
    state = deploy.rollback(store, "m")  # a second rollback walks further back
    assert state.stable.version == 1 and deploy.alias_targets(state)["previous"] is None
    with pytest.raises(deploy.DeployError, match="nothing to roll back to"):
        deploy.rollback(store, "m")

    # The log only grew; the head the service polls matches a full replay.
    log = deploy.entries(store, "m")
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert [e.action for e in log] == ["deploy", "deploy", "promote", "deploy", "rollback",
                                       "rollback"]
    assert [(e.model.version, e.state) for e in log] == [
        (1, "stable"), (2, "canary"), (2, "stable"), (3, "stable"), (3, "rolled_back"),
        (2, "rolled_back")]
    assert [e.to.version for e in log[-2:]] == [2, 1] and all(e.time for e in log)
    assert deploy.head(store, "m") == deploy.current(store, "m").to_json()
    head = deploy.read_head(store, "m")
    assert (head.seq, head.stable, head.previous, head.stack) == (6, model(1), None, (1,))


# A history written before the records were typed: read as it is, no migration.
V1 = {"version": 1, "trained_weights": "b3:w1", "quantized_weights": "b3:q1",
      "model_card": "b3:c1", "preprocess": "b3:p1",
      "inputs": {"numeric": ["age"], "categorical": ["sex"]},
      "variants": {"int8": {"content_hash": "b3:i1", "sha256": "ab" * 32, "bytes": 12}}}
V2 = V1 | {"version": 2, "trained_weights": "b3:w2", "model_card": "b3:c2"}


def test_a_history_on_disk_reads_back_and_new_entries_keep_its_format(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    store.create_record("deployments/m/00000001", {
        "seq": 1, "time": 1.5, "actor": "ci", "action": "deploy", "state": "stable",
        "model": V1, "reason": "passed the deploy gate"})
    store.create_record("deployments/m/00000002", {
        "seq": 2, "time": 2.5, "actor": "ci", "action": "deploy", "state": "stable",
        "model": V2, "reason": "passed the deploy gate"})
    state = deploy.current(store, "m")
    assert state.stable.variants["int8"].sha256 == "ab" * 32
    assert state.stable.inputs.categorical == ("sex",) and state.previous.version == 1
    assert state.to_json() == {"seq": 2, "stable": V2, "canary": None, "previous": V1,
                               "stack": [1, 2]}
    assert state.stable.artifacts() == {"b3:w2", "b3:q1", "b3:c2", "b3:p1", "b3:i1"}

    deploy.rollback(store, "m", actor="me")
    written = store.read_record("deployments/m/00000003")
    assert set(written) == {"seq", "time", "actor", "action", "state", "model", "reason", "to"}
    assert (written["model"], written["to"], written["state"]) == (V2, V1, "rolled_back")
    assert deploy.head(store, "m") == {"seq": 3, "stable": V1, "canary": None,
                                       "previous": None, "stack": [1]}


def test_an_unreadable_history_entry_is_named(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    deploy.deploy(store, "m", model(1), canary_share=0.0)
    store.write_record("deployments/m/00000002", {"seq": 2, "action": "deploy"})
    with pytest.raises(deploy.UnreadableHistory,
                       match=r"records/deployments/m/00000002\.json: .* unreadable"):
        deploy.current(store, "m")


def test_rollback_with_a_live_canary_withdraws_it(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    deploy.deploy(store, "m", model(1), canary_share=0.5)
    deploy.deploy(store, "m", model(2), canary_share=0.5)
    state = deploy.rollback(store, "m")
    assert state.canary is None and state.stable.version == 1
    with pytest.raises(deploy.DeployError, match="no canary to promote"):
        deploy.promote(store, "m")


def test_a_new_canary_replaces_the_live_one_and_stale_verdicts_do_not_apply(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    deploy.deploy(store, "m", model(1), canary_share=0.5)
    _, seen = deploy.deploy(store, "m", model(2), canary_share=0.5)
    _, state = deploy.deploy(store, "m", model(3), canary_share=0.5)
    assert state.canary.version == 3
    assert deploy.entries(store, "m")[-2].action == "abort"
    # A verdict reached on canary 2 must not promote canary 3.
    with pytest.raises(deploy.DeployError, match="changed"):
        deploy.promote(store, "m", expect_seq=seen.seq)
    assert deploy.current(store, "m").canary.version == 3


def test_reject_records_why_and_changes_nothing(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    deploy.deploy(store, "m", model(1), canary_share=0.5)
    before = deploy.current(store, "m")
    after = deploy.reject(store, "m", model(2), "deploy gate blocked: roc_auc ≥ 0.9")
    deploy.reject(store, "m", model(2), "deploy gate blocked: roc_auc ≥ 0.9")  # recorded once
    assert (after.stable, after.canary, after.stack) == (before.stable, before.canary,
                                                          before.stack)
    log = deploy.entries(store, "m")
    assert [e.action for e in log] == ["deploy", "reject"]
    assert "roc_auc" in log[-1].reason


def test_history_entries_are_never_overwritten(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    store.create_record("deployments/m/00000001", {"a": 1})
    with pytest.raises(FileExistsError):
        store.create_record("deployments/m/00000001", {"a": 2})
    assert store.read_record("deployments/m/00000001") == {"a": 1}


def _deploy_many(root: str, worker: int) -> None:
    store = ArtifactStore(root)
    for i in range(5):
        deploy.deploy(store, "m", model(100 * worker + i), canary_share=0.0)


def _run_deployers(target, args: list[tuple], timeout_s: float) -> list[dict]:
    """Run deployer processes to the end; returns the history they left (checked whole)."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=a) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout_s)
        assert p.exitcode == 0
    log = deploy.entries(ArtifactStore(args[0][0]), "m")
    assert [e.seq for e in log] == list(range(1, 16))
    assert len({e.model.version for e in log}) == 15
    return log


def test_concurrent_deploys_from_processes_keep_one_consistent_history(tmp_path):
    root = str(tmp_path / "store")
    log = _run_deployers(_deploy_many, [(root, w) for w in (1, 2, 3)], 60)
    assert deploy.current(ArtifactStore(root), "m").stable == log[-1].model


def _deploy_from_own_machine(root: str, worker: int, tmp: str) -> None:
    import tempfile

    tempfile.tempdir = tmp  # a remote store's deploy lock is per machine: not shared here
    store = ArtifactStore(root)
    for i in range(5):
        while True:
            try:
                deploy.deploy(store, "m", model(100 * worker + i), canary_share=0.0)
                break
            except deploy.DeployError as exc:
                assert "run the command again" in str(exc)


def test_deployers_on_different_machines_never_overwrite_each_other(tmp_path, store_root):
    """No shared lock (each process has its own lock folder, as on separate machines): the
    conditional write of history entries alone keeps one consistent history."""
    for w in (1, 2, 3):
        (tmp_path / f"machine{w}").mkdir()
    _run_deployers(_deploy_from_own_machine,
                   [(store_root, w, str(tmp_path / f"machine{w}")) for w in (1, 2, 3)], 120)
    assert deploy.read_head(ArtifactStore(store_root), "m").seq == 15, \
        "the head cache ends at the newest entry"


def test_rollback_command_imports_neither_mlflow_nor_dagster(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    name = "breast_cancer"  # the demo spec's model
    deploy.deploy(store, name, model(1), canary_share=0.0)
    deploy.deploy(store, name, model(2), canary_share=0.0)
    code = ("import sys, json; from cli.deployctl import main; rc = main(['rollback', "
            "'--aliases', 'skip']); print(json.dumps([rc, sorted(m for m in ('mlflow', "
            "'dagster', 'torch', 'onnxruntime', 'pandas') if m in sys.modules)]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, env={"PYTHONPATH": str(REPO), "TIDELINE_HOME": str(tmp_path),
                                         "PATH": "/usr/bin:/bin"}, check=True, timeout=60)
    rc, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert rc == 0 and heavy == []
    assert "stable v1" in out.stdout
    assert deploy.current(store, name).stable.version == 1


def test_rollback_on_a_lakefs_store_is_committed_in_the_background(tmp_path, lakefs):
    import os

    import lakefs as lakefs_sdk

    repo = lakefs.new_repo()
    root = f"lakefs://{repo}/main/store"
    store = ArtifactStore(root)
    name = "breast_cancer"
    deploy.deploy(store, name, model(1), canary_share=0.0)
    deploy.deploy(store, name, model(2), canary_share=0.0)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TIDELINE_HOME": str(tmp_path),
           "TIDELINE_STORE": root}
    out = subprocess.run([sys.executable, "-m", "cli.deployctl", "rollback", "--aliases",
                          "wait"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert "stable v1" in out.stdout and "committed as" in out.stdout, out.stdout + out.stderr
    branch = lakefs_sdk.Branch(repo, "main", client=lakefs.client())
    assert next(branch.uncommitted(max_amount=1), None) is None
    head = next(branch.log(max_amount=1))
    assert head.metadata["deployment_seq"] == "3" and "stable v1" in head.message


def test_the_lock_times_out_with_the_message_naming_the_lock_file(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    with deploy.locked(store, "m"):
        with pytest.raises(deploy.DeployError, match=r"deployments-m\.lock for more than 0\.2 s"):
            with deploy.locked(store, "m", timeout_s=0.2):
                pass
    with deploy.locked(store, "m", timeout_s=0.2):  # released: free again
        pass


def edge_model(store: ArtifactStore, version: int) -> deploy.DeployedModel:
    """A model entry whose int8 file is in the store (what an edge bundle is built from)."""
    import hashlib

    data = f"int8 onnx bytes of version {version} ".encode() * 50
    return model(version, variants={"int8": deploy.VariantFile(
        content_hash=store.put_bytes(data), bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest())})


def test_repair_rebuilds_head_edge_bundles_and_aliases_from_the_history(tmp_path, monkeypatch):
    import hashlib

    from pipelines import tracking
    from pipelines.repair import repair
    from pipelines.targets import EDGE_MANIFEST, EDGE_MODEL

    synced = []
    monkeypatch.setattr(tracking, "set_aliases",
                        lambda uri, name, aliases: synced.append(dict(aliases)))
    store, edge, uri = ArtifactStore(tmp_path / "store"), str(tmp_path / "edge"), "sqlite:///r.db"
    deploy.deploy(store, "m", edge_model(store, 1), canary_share=0.5)  # stable
    deploy.deploy(store, "m", edge_model(store, 2), canary_share=0.5)  # canary beside it
    state = deploy.current(store, "m")

    def bundle_ok(version: int, sha256: str) -> bool:
        folder = tmp_path / "edge" / "m" / f"v{version}"
        manifest = json.loads((folder / EDGE_MANIFEST).read_text())
        data = (folder / EDGE_MODEL).read_bytes()
        return (sorted(p.name for p in folder.iterdir()) == [EDGE_MANIFEST, EDGE_MODEL]
                and hashlib.sha256(data).hexdigest() == sha256 == manifest["sha256"])

    # Nothing published yet (as after a kill before the edge bundle and the aliases).
    first = repair(store, "m", edge_target=edge, tracking_uri=uri)
    assert first.head is None and [(e.version, e.role) for e in first.edge] == [
        (1, "stable"), (2, "canary")]
    assert all(e.problems == ["folder missing"] for e in first.edge)
    assert first.aliases == {"champion": 1, "previous": None} and synced == [first.aliases]
    assert bundle_ok(1, state.stable.variants["int8"].sha256)
    assert bundle_ok(2, state.canary.variants["int8"].sha256)

    # In line: a second repair changes nothing and does not touch the registry.
    again = repair(store, "m", edge_target=edge, tracking_uri=uri)
    assert not again.changed and again.lines() == [] and len(synced) == 1

    # A deleted head, a truncated edge model, a leftover temp file, a missing alias record.
    (tmp_path / "store" / "records" / "deployments" / "m" / "head.json").unlink()
    v1_model = tmp_path / "edge" / "m" / "v1" / EDGE_MODEL
    v1_model.write_bytes(v1_model.read_bytes()[:100])
    (tmp_path / "edge" / "m" / "v2" / f".{EDGE_MODEL}.tmp-0123abcd").write_bytes(b"partial")
    (tmp_path / "store" / "records" / "deployments" / "m" / "aliases.json").unlink()
    report = repair(store, "m", edge_target=edge, tracking_uri=uri)
    assert report.head == "missing" and deploy.head(store, "m") == state.to_json()
    v1, v2 = report.edge
    assert (v1.version, v1.problems, v1.temp_files_removed) == (
        1, [f"{EDGE_MODEL} does not match its sha256"], [])
    assert (v2.version, v2.problems, len(v2.temp_files_removed)) == (2, [], 1)
    assert bundle_ok(1, state.stable.variants["int8"].sha256)
    assert bundle_ok(2, state.canary.variants["int8"].sha256)
    assert report.aliases == {"champion": 1, "previous": None} and len(synced) == 2
    text = "\n".join(report.lines())
    assert "head.json rebuilt" in text and "edge bundle v1 (stable) re-published" in text
    assert "MLflow aliases re-synced" in text

    # A stale head (a kill between the history entry and the head write) is rebuilt too;
    # the aliases follow a promotion only once.
    deploy.promote(store, "m")
    store.write_record("deployments/m/head", state.to_json())
    report = repair(store, "m", edge_target=edge, tracking_uri=uri)
    assert report.head == f"at entry {state.seq}"
    assert deploy.head(store, "m") == deploy.current(store, "m").to_json()
    assert report.aliases == {"champion": 2, "previous": 1} and len(synced) == 3
    assert not repair(store, "m", edge_target=edge, tracking_uri=uri).changed


def test_repair_of_a_store_in_line_imports_no_mlflow_and_writes_nothing(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    deploy.deploy(store, "m", edge_model(store, 1), canary_share=0.0)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    store.write_record("deployments/m/aliases", {  # as sync_aliases leaves it
        "seq": 1, "registry": deploy._registry_id(uri),
        "aliases": {"champion": 1, "previous": None}})
    code = ("import json, sys; from pipelines.repair import repair; "
            "from pipelines.store import ArtifactStore; "
            f"r = repair(ArtifactStore({str(tmp_path / 'store')!r}), 'm', "
            f"edge_target={str(tmp_path / 'edge')!r}, tracking_uri={uri!r}); "
            "print(json.dumps([r.lines(), 'mlflow' in sys.modules]))")

    def run() -> list:
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                             text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                             check=True, timeout=60)
        return json.loads(out.stdout.strip().splitlines()[-1])

    lines, imported = run()  # publishes the missing edge bundle: no registry needed
    assert lines == [f"m: edge bundle v1 (stable) re-published at {tmp_path}/edge/m/v1 "
                     "(folder missing)"] and not imported
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    mtimes = [p.stat().st_mtime_ns for p in before]
    assert run() == [[], False]
    after = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert after == before and [p.stat().st_mtime_ns for p in after] == mtimes
