"""Two chains with the same recipe keys at once, on each store backend: one artifact each."""

import os
import subprocess
import sys

import pytest

from pipelines import deploy
from pipelines.store import ArtifactStore
from tests.conftest import CHAIN, REPO

pytestmark = pytest.mark.slow
MODEL = "breast_cancer"  # datasets/demo.yaml


def test_two_concurrent_chains_share_one_store(tmp_path, store_root):
    procs = []
    for name in ("a", "b"):
        home = tmp_path / name
        (home / "dagster").mkdir(parents=True)
        env = {**os.environ, "PYTHONPATH": str(REPO), "TIDELINE_HOME": str(home),
               "DAGSTER_HOME": str(home / "dagster"), "TIDELINE_SPEC": "demo",
               "TIDELINE_STORE": store_root}
        subprocess.run([sys.executable, "-m", "cli.setup_state"], cwd=REPO, env=env,
                       check=True, capture_output=True)
        procs.append(subprocess.Popen([sys.executable, "-m", "cli.demo"], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    # The table's rows: model, stage, cache, content hash, seconds.
    tables = [[line.split() for line in out.splitlines() if line.split()[:1] == [MODEL]]
              for out in outs]
    rows = [{parts[1]: parts[3] for parts in table if parts[1] in CHAIN} for table in tables]
    # The deterministic stages produced the same artifact in both processes.
    for asset in ("raw_data", "validated_features", "trained_weights", "quantized_weights"):
        assert rows[0][asset] == rows[1][asset], asset
    store = ArtifactStore(store_root)
    assert all(h is not None for _, h, _ in store.object_files()), "no temp object left"
    for asset in ("raw_data", "validated_features", "trained_weights", "quantized_weights"):
        keys = [p for p in store.memo_files() if f"/keys/{MODEL}/{asset}/" in p]
        assert len(keys) == 1, asset
    # One deployment: the second process found the model already stable.
    log = deploy.entries(store, MODEL)
    assert [e.action for e in log] == ["deploy"]
    summary = [next(parts for parts in table if parts[1] == "deployment")
               for table in tables]  # the table row, not the step's progress lines
    assert sorted(" ".join(parts[2:4]) for parts in summary) == ["- deployed", "- unchanged"]
    if store_root.startswith("lakefs://"):
        # Both runs' writes are committed (tag commit + each process's end-of-run commit).
        import lakefs

        from pipelines.lakefs import LakeFSPath, make_client

        loc, client = LakeFSPath.parse(store_root), make_client()
        branch = lakefs.Branch(loc.repo, loc.ref, client=client)
        assert next(branch.uncommitted(max_amount=1), None) is None
        tagged = lakefs.Tag(loc.repo, "breast_cancer-v1", client=client).get_commit()
        assert tagged.metadata["actor"].startswith("dagster run ")
