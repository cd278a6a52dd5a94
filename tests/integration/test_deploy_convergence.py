"""Deployment converges: a process killed at any write of the deployment step is finished by
the next run, and the service and `deployctl repair` put a half-done deployment right.

The kills are fault injection, not timing: the deployment runs in a subprocess whose write
functions (store records, edge-target files, MLflow alias calls) are wrapped to `os._exit`
at the Nth write. N goes up until the step completes without reaching it, so every write
the step makes, including any added later, is a kill point that must converge.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import deploy
from pipelines.audit_verify import audit_version
from pipelines.store import ArtifactStore
from tests.conftest import CHAIN, REPO, Chain, fast_adult_spec, materializations
from tests.serving_support import LOOSE_GATE, Service

pytestmark = pytest.mark.slow

MODEL = "adult"
# Every function the deployment step writes through: history entries, head and alias
# record, audit pack (the store), edge bundle files (fsspec), the MLflow registry's aliases
# and the audit pack logged to MLflow.
WRITES = [("pipelines.store", "ArtifactStore", "create_record"),
          ("pipelines.store", "ArtifactStore", "_atomic_write"),
          ("fsspec.implementations.local", "LocalFileSystem", "pipe_file"),
          ("fsspec.implementations.local", "LocalFileSystem", "mv"),
          ("fsspec.implementations.local", "LocalFileSystem", "rm"),
          ("mlflow", "MlflowClient", "set_registered_model_alias"),
          ("mlflow", "MlflowClient", "delete_registered_model_alias"),
          ("mlflow", "MlflowClient", "log_artifacts"),  # the audit pack, logged with the run
          ("mlflow", "MlflowClient", "set_model_version_tag")]


def faulted_deploy() -> None:
    """Subprocess entry: run the deployment step, exiting (status 9) at write FAULT_AT."""
    fault_at, calls = int(os.environ["FAULT_AT"]), []

    def faulty(original, label: str):
        def wrapper(*args, **kwargs):
            calls.append(label)
            if len(calls) == fault_at:
                where = next((str(a) for a in args[1:] if isinstance(a, str)), "")
                print(f"FAULT {label} {where}", flush=True)
                os._exit(9)  # as a SIGKILL: no finally, no atexit, locks dropped by the OS
            return original(*args, **kwargs)

        return wrapper

    for module, owner_name, name in WRITES:
        owner = getattr(importlib.import_module(module), owner_name)
        setattr(owner, name, faulty(getattr(owner, name), f"{owner_name}.{name}"))
    from pipelines.catalog import selected_spec
    from pipelines.paths import mlflow_uri, state_dir, store_root
    from pipelines.stages.deployment import publish

    state = state_dir()
    refs = json.loads(os.environ["REFS"])
    publish(selected_spec(), ArtifactStore(store_root(state)),
            tracking_uri=mlflow_uri(state), actor="fault test", **refs)
    print(f"DONE {len(calls)} writes: {' '.join(calls)}", flush=True)


def run_faulted(home: Path, spec: Path, refs: dict, fault_at: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TIDELINE_HOME": str(home),
           "TIDELINE_SPEC": str(spec), "FAULT_AT": str(fault_at), "REFS": json.dumps(refs),
           "TIDELINE_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("TIDELINE_POSTGRES_URL", None)
    code = ("from tests.integration.test_deploy_convergence import faulted_deploy; "
            "faulted_deploy()")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, adult_sample):
    """A home where the real chain deployed v1 (stable) and trained v2 up to its model card.

    Returns ``(home, spec of v2, content-hash refs of v2)``: deploying v2 is the step the
    faults cut.
    """
    base = tmp_path_factory.mktemp("converge")
    home, source = base / "home", base / "adult.csv"
    source.write_bytes(adult_sample.read_bytes())
    (base / "v1").mkdir()
    (base / "v2").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"TIDELINE_THREADS": "1", "MPLBACKEND": "Agg",
                           "GIT_PYTHON_REFRESH": "quiet"}.items():
            mp.setenv(key, value)
        mp.delenv("TIDELINE_POSTGRES_URL", raising=False)
        spec1 = fast_adult_spec(base / "v1", source, gate=LOOSE_GATE,
                                deployment__canary__share=0.0)
        assert Chain(home, spec1, mp).run().success, "training and deploying v1 failed"
        spec2 = fast_adult_spec(base / "v2", source, gate=LOOSE_GATE, training__seed=1,
                                deployment__canary__share=0.0)
        chain = Chain(home, spec2, mp)
        result = chain.defs().resolve_job_def(chain.job("training")).execute_in_process(
            instance=chain.instance, raise_on_error=False,
            asset_selection=[chain.key(a) for a in ("raw_source", *CHAIN)])
        assert result.success, "training v2 up to its model card failed"
        meta = materializations(result)
    refs = {a: str(meta[a]["content_hash"]) for a in ("trained_weights", "quantized_weights",
                                                      "model_card")}
    state = deploy.current(ArtifactStore(home / "store"), MODEL)
    assert state.stable.version == 1 and state.stable.trained_weights != refs[
        "trained_weights"], "v2 must be a new model"
    return home, spec2, refs


def copy_of(home: Path, dest: Path) -> Path:
    """A private copy of a home, its aliases checked against its own (copied) registry."""
    from pipelines.paths import mlflow_uri
    from pipelines.repair import repair

    shutil.copytree(home, dest)
    # The alias record names the registry by its URL, which holds the folder's path: the
    # copy's first repair sets the aliases once more on the copied registry.
    repair(ArtifactStore(dest / "store"), MODEL, tracking_uri=mlflow_uri(dest))
    return dest


def champion(home: Path) -> dict[str, str | None]:
    from pipelines.paths import mlflow_uri
    from pipelines.tracking import import_mlflow

    mlflow = import_mlflow()
    client = mlflow.MlflowClient(tracking_uri=mlflow_uri(home))
    out = {}
    for alias in ("champion", "previous"):
        try:
            out[alias] = str(client.get_model_version_by_alias(MODEL, alias).version)
        except mlflow.exceptions.MlflowException:
            out[alias] = None
    return out


def assert_converged(home: Path, refs: dict) -> None:
    """Head = the replayed history; v2 stable with an intact audit pack; its edge bundle
    (signed) intact; aliases follow."""
    store = ArtifactStore(home / "store")
    state = deploy.current(store, MODEL)
    log = deploy.entries(store, MODEL)
    assert [(e.action, e.state) for e in log] == [("deploy", "stable")] * 2, \
        "one history entry per deployment, none lost or doubled"
    assert state.stable.trained_weights == refs["trained_weights"]
    assert deploy.head(store, MODEL) == state.to_json()
    folder = home / "edge" / MODEL / f"v{state.stable.version}"
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json", "model.sig", "model_int8.onnx"], \
        "the bundle and nothing else: no temp file left"
    sha256 = hashlib.sha256((folder / "model_int8.onnx").read_bytes()).hexdigest()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sha256 == state.stable.variants["int8"].sha256 == manifest["sha256"]
    # The pack was written before the entry that made v2 live, whole, and checks out.
    assert state.stable.audit_pack is not None
    report = audit_version(store, MODEL, state.stable.version, state=home)
    assert report.ok, [f.line() for f in report.failures]
    assert (folder / "model.sig").read_bytes() == store.get_bytes(store.get_manifest(
        state.stable.audit_pack).files["signatures/model_int8.onnx.sig"])
    assert champion(home) == {"champion": str(state.stable.version),
                              "previous": str(state.previous.version)}


def test_a_kill_at_every_write_of_the_deployment_step_converges_on_the_next_run(
        pristine, tmp_path, monkeypatch):
    home0, spec, refs = pristine
    faults: list[str] = []
    served_stale_head = False
    for fault_at in range(1, 60):
        home = copy_of(home0, tmp_path / f"fault{fault_at}")
        out = run_faulted(home, spec, refs, fault_at)
        if out.returncode == 0:  # the step finished before reaching write N: all covered
            assert f"DONE {fault_at - 1} writes" in out.stdout, out.stdout + out.stderr
            assert_converged(home, refs)
            break
        assert out.returncode == 9, out.stdout + out.stderr
        faults.append(out.stdout.split("FAULT ", 1)[1].strip())
        if faults[-1].startswith("ArtifactStore._atomic_write") and "/head.json" in faults[-1] and (
                not served_stale_head):
            # Killed after the history entry, before head.json: a service started now
            # serves the history's stable model, not the old one.
            served_stale_head = True
            svc_home = Path(shutil.copytree(home, tmp_path / "service"))
            assert deploy.read_head(ArtifactStore(svc_home / "store"), MODEL).stable \
                .trained_weights != refs["trained_weights"]
            with Service(svc_home, spec) as svc:
                assert svc.ready()["stable"] == deploy.current(
                    ArtifactStore(svc_home / "store"), MODEL).stable.version
        # The next run, a real Dagster adult_deploy_job, finishes what the killed one left.
        result = Chain(home, spec, monkeypatch).run("deploy")
        assert result.success, f"rerun after a kill at {faults[-1]} failed"
        try:
            assert_converged(home, refs)
        except AssertionError as exc:
            raise AssertionError(f"no convergence after a kill at {faults[-1]}: {exc}") from exc
    else:
        pytest.fail("the deployment step never completed")
    kinds = {f.split()[0] for f in faults}
    assert {"ArtifactStore.create_record", "ArtifactStore._atomic_write",
            "LocalFileSystem.pipe_file", "LocalFileSystem.mv",
            "MlflowClient.set_registered_model_alias"} <= kinds, faults
    # The audit pack's writes (its files, then its pointer) were kill points too.
    assert any(f"/keys/{MODEL}/audit_pack/" in f for f in faults), faults
    assert served_stale_head, faults


def test_service_start_and_deploy_status_repair_put_a_half_done_deployment_right(
        pristine, tmp_path):
    home0, spec, _ = pristine
    home = copy_of(home0, tmp_path / "home")
    store = ArtifactStore(home / "store")
    state = deploy.current(store, MODEL)
    records = home / "store" / "records" / "deployments" / MODEL
    (records / "head.json").unlink()
    edge_model = home / "edge" / MODEL / "v1" / "model_int8.onnx"
    edge_model.write_bytes(edge_model.read_bytes()[:1000])
    (records / "aliases.json").unlink()
    from pipelines.paths import mlflow_uri
    from pipelines.tracking import import_mlflow

    import_mlflow().MlflowClient(tracking_uri=mlflow_uri(home)).delete_registered_model_alias(
        MODEL, "champion")

    with Service(home, spec) as svc:  # would never become ready without a head
        assert svc.ready()["stable"] == state.stable.version
        env = svc.env
    assert deploy.head(store, MODEL) == state.to_json()

    def deployctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli.deployctl", *args], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=120)

    out = deployctl("status", "--repair")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "edge bundle v1 (stable) re-published" in out.stdout
    assert "model_int8.onnx does not match its sha256" in out.stdout
    assert "MLflow aliases re-synced with the history (champion=1, previous=none)" in out.stdout
    assert "head.json" not in out.stdout and "stable v1" in out.stdout
    assert hashlib.sha256(edge_model.read_bytes()).hexdigest() == state.stable.variants[
        "int8"].sha256
    assert champion(home)["champion"] == str(state.stable.version)
    again = deployctl("repair")
    assert again.returncode == 0 and "nothing to repair" in again.stdout, again.stdout
