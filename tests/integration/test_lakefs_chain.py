"""The chain with its source and its artifact store in lakeFS (real server or the stand-in).

Source ``lakefs://<repo>/main/data/adult.csv``, store on the ``artifacts`` branch: the
raw data is versioned by commit and checksum, each successful run is committed by
``lakefs_commit_sensor``, each deployed model is tagged, an unchanged source is all
cache hits, and reverting a run's commits rolls the store (and the deployment) back.
"""

import dagster as dg
import lakefs as lakefs_sdk
import pytest

from pipelines import deploy
from pipelines.store import ArtifactStore
from tests.conftest import failure_text, fast_adult_spec, materializations
from tests.serving_support import LOOSE_GATE

pytestmark = pytest.mark.slow


def commit_by_sensor(chain, result):
    """Evaluate lakefs_commit_sensor on the run's success event, as the daemon would."""
    defs = chain.defs()
    sensor = next(s for s in defs.sensors if s.name == "lakefs_commit_sensor")
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_instance=chain.instance,
        dagster_run=chain.instance.get_run_by_id(result.run_id),
        dagster_event=result.get_run_success_event())
    return sensor(context)


def observed_version(result) -> str:
    events = [e for e in result.get_asset_observation_events()
              if e.asset_key == dg.AssetKey(["adult", "raw_source"])]
    return events[-1].asset_observation_data.asset_observation.data_version


def test_chain_with_source_and_store_in_lakefs(tmp_path, home, adult_sample, chain_factory,
                                               lakefs, monkeypatch):
    client = lakefs.client()
    repo = lakefs.new_repo()
    main = lakefs_sdk.Branch(repo, "main", client=client)
    data = adult_sample.read_bytes()
    main.object("data/adult.csv").upload(data, mode="wb", pre_sign=False)
    c1 = main.commit("adult sample").id
    artifacts = lakefs_sdk.Branch(repo, "artifacts", client=client).create("main")
    root = f"lakefs://{repo}/artifacts/store"
    monkeypatch.setenv("TIDELINE_STORE", root)
    spec = fast_adult_spec(tmp_path, f"lakefs://{repo}/main/data/adult.csv", gate=LOOSE_GATE)
    chain = chain_factory(spec)

    first = chain.run()
    assert first.success
    meta = materializations(first)
    assert meta["raw_data"]["lakefs_commit"] == c1
    assert observed_version(first).startswith(f"{c1}:")
    assert meta["deployment"]["outcome"] == "deployed"
    tag = meta["deployment"]["lakefs_tag"]
    assert lakefs_sdk.Tag(repo, tag, client=client).get_commit().id == \
        meta["deployment"]["lakefs_commit"]
    # The deployment was the run's last write and its commit holds everything.
    assert isinstance(commit_by_sensor(chain, first), dg.SkipReason)
    assert next(artifacts.log(max_amount=1)).id == meta["deployment"]["lakefs_commit"]
    assert next(artifacts.uncommitted(max_amount=1), None) is None

    # Unchanged source: every stage is a cache hit, nothing new to commit.
    second = chain.run()
    assert second.success
    meta2 = materializations(second)
    assert meta2["raw_data"]["cache"] == "hit" and meta2["trained_weights"]["cache"] == "hit"
    assert meta2["deployment"]["outcome"] == "unchanged"
    assert isinstance(commit_by_sensor(chain, second), dg.SkipReason)
    # Whatever is staged when a run succeeds is committed under that run's id.
    ArtifactStore(root).write_record("notes/after-second-run", {"by": "hand"})
    assert commit_by_sensor(chain, second) is None
    head = next(artifacts.log(max_amount=1))
    assert head.metadata["dagster_run_id"] == second.run_id
    assert head.metadata["dagster_job"] == "adult_training_job"
    before_third = head.id

    # New data committed to main: a new data version, a new snapshot, a new (canary) model.
    lines = data.splitlines(keepends=True)
    main.object("data/adult.csv").upload(b"".join(lines[:-500]), mode="wb", pre_sign=False)
    c2 = main.commit("drop the last 500 rows").id
    third = chain.run()
    assert third.success
    meta3 = materializations(third)
    assert meta3["raw_data"]["cache"] == "miss" and meta3["raw_data"]["lakefs_commit"] == c2
    assert meta3["deployment"]["role"] == "canary"
    commit_by_sensor(chain, third)
    store = ArtifactStore(root)
    assert deploy.current(store, "adult").canary.version == 2

    # Rolling back is a lakeFS revert of the run's commits (newest first).
    run3_commits = []
    for commit in artifacts.log():
        if commit.id == before_third:
            break
        run3_commits.append(commit.id)
    assert run3_commits, "the third run was committed"
    for commit_id in run3_commits:
        artifacts.revert(commit_id)
    state = deploy.current(ArtifactStore(root), "adult")
    assert state.canary is None and state.stable.version == 1
    tagged = ArtifactStore(f"lakefs://{repo}/{tag}/store")
    manifest = tagged.get_manifest(meta["trained_weights"]["content_hash"])
    assert all(tagged.get_bytes(h) for h in manifest.files.values())


def test_a_missing_lakefs_object_fails_the_run_naming_it(tmp_path, home, adult_sample,
                                                         chain_factory, lakefs, monkeypatch):
    repo = lakefs.new_repo()
    spec = fast_adult_spec(tmp_path, f"lakefs://{repo}/main/data/missing.csv")
    result = chain_factory(spec).run()
    assert not result.success
    text = failure_text(result)
    assert "data/missing.csv" in text and "commit it there or fix source.path" in text
