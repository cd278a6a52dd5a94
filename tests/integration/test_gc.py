"""make gc: only unreachable artifacts go; deployed models and the latest materializations load."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from pipelines import deploy
from tests.conftest import CHAIN, REPO, fast_adult_spec, materializations
from tests.serving_support import LOOSE_GATE

pytestmark = pytest.mark.slow


def loads(store, content_hash: str) -> bool:
    manifest = store.get_manifest(content_hash)
    return all(len(store.get_bytes(h)) > 0 for h in manifest.files.values())


def test_gc_keeps_deployed_models_and_latest_materializations(tmp_path, home, adult_sample,
                                                              chain_factory):
    source = tmp_path / "adult.csv"
    source.write_bytes(adult_sample.read_bytes())
    chain = chain_factory(fast_adult_spec(tmp_path, source, gate=LOOSE_GATE))
    runs = []
    frame = pd.read_csv(source, dtype=str, keep_default_na=False).reset_index(drop=True)
    for i in range(3):  # three data versions: stable v1, then canaries
        if i:
            frame.loc[i, "age"] = str(int(frame.loc[i, "age"]) + 1)
            frame.to_csv(source, index=False)
        result = chain.run()
        assert result.success
        runs.append(materializations(result))
    store = chain.store()
    objects_before = {h for _, h, _ in store.object_files()}

    env = {**os.environ, "PYTHONPATH": str(REPO), "TIDELINE_HOME": str(home),
           "DAGSTER_HOME": str(home / "dagster"), "TIDELINE_SPEC": str(chain.spec)}
    # The Chain's instance lives in DAGSTER_HOME; gc reads its materializations there.
    import shutil

    shutil.copy(REPO / "dagster.yaml", home / "dagster" / "dagster.yaml")

    def gc(*args):
        return subprocess.run([sys.executable, "-m", "cli.gc", "--keep", "1",
                               "--grace-minutes", "0", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, check=True, timeout=300).stdout

    dry = gc("--dry-run")
    assert "would delete" in dry
    listed = [line.strip() for line in dry.splitlines() if line.startswith("  ")]
    assert listed, dry
    assert {h for _, h, _ in store.object_files()} == objects_before, "a dry run deletes nothing"

    out = gc()
    assert f"deleting {len(listed)} objects" in out
    after = {h for _, h, _ in store.object_files()}
    assert len(after) < len(objects_before)
    # Older snapshots (never deployed) are gone…
    old_raw = runs[0]["raw_data"]["content_hash"]
    assert old_raw not in after
    # …every model in the deployment history still loads…
    log = deploy.entries(store, "adult")
    assert len({e.model.version for e in log}) >= 2
    for entry in log:
        model = entry.model
        for key in ("trained_weights", "quantized_weights", "model_card"):
            assert loads(store, getattr(model, key)), (model.version, key)
        for variant in model.variants.values():
            assert store.has(variant.content_hash)
    # …and so does the latest materialization of every asset, which stays a cache hit.
    for asset in CHAIN:
        assert loads(store, runs[-1][asset]["content_hash"]), asset
    again = materializations(chain.run())
    assert [again[a]["cache"] for a in CHAIN] == ["hit"] * len(CHAIN)
