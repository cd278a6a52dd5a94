"""`<model>_batch_job`: a table scored with the stable model, memoized like every stage."""

import io

import pandas as pd
import pytest
import yaml

from pipelines import deploy
from tests.conftest import failure_text, fast_adult_spec, materializations
from tests.serving_support import LOOSE_GATE

# No bootstrap intervals: the model card's fairness figures are not what is tested here.
GATE = LOOSE_GATE | {"bootstrap": 0}

pytestmark = pytest.mark.slow


def _predictions(chain, meta) -> pd.DataFrame:
    store = chain.store()
    manifest = store.get_manifest(meta["content_hash"])
    return pd.read_parquet(io.BytesIO(store.get_bytes(manifest.files["predictions.parquet"])))


def test_scored_once_then_a_hit_and_a_new_stable_model_rescores(tmp_path, adult_sample,
                                                                chain_factory):
    source = tmp_path / "adult.csv"
    source.write_bytes(adult_sample.read_bytes())
    # The table to score: rows without their label, with ids of their own.
    rows = pd.read_csv(adult_sample, dtype=str, keep_default_na=False).head(300)
    rows = rows.drop(columns=["income-per-year"])
    rows.insert(0, "person", [f"p{i:04d}" for i in range(len(rows))])
    table = tmp_path / "to_score.csv"
    rows.to_csv(table, index=False)
    # canary share 0: a model that passes the gate becomes the stable model at once; loose
    # tolerances so a second seed is not held back by the champion's scores.
    spec = fast_adult_spec(tmp_path, source, deployment={
        "canary": {"share": 0}, "batch": {"source": str(table), "id_column": "person"}},
        gate=GATE)
    chain = chain_factory(spec)

    # Before any model is deployed the job fails, saying what to do.
    early = chain.run("batch")
    assert not early.success and "no stable model" in failure_text(early)

    trained = chain.run()
    assert trained.success, failure_text(trained)
    first = chain.run("batch")
    assert first.success, failure_text(first)
    m1 = materializations(first)["batch_predictions"]
    assert m1["cache"] == "miss" and m1["rows"] == 300 and m1["model_version"] == 1
    out1 = _predictions(chain, m1)
    assert out1["row_id"].tolist() == rows["person"].tolist()
    assert (out1["model_version"] == 1).all()
    assert out1["probability"].between(0, 1).all()
    assert set(out1["label"]) <= {">50K", "<=50K"}

    second = materializations(chain.run("batch"))["batch_predictions"]
    assert second["cache"] == "hit"
    assert (second["recipe_key"], second["content_hash"]) == (m1["recipe_key"],
                                                              m1["content_hash"])

    # A new stable model (another seed) re-scores the same table.
    raw = yaml.safe_load(spec.read_text())
    raw["training"]["seed"] = 99
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    retrained = chain.run()
    assert retrained.success, failure_text(retrained)
    assert deploy.version_label(deploy.current(chain.store(), "adult").stable) == "2"
    third = materializations(chain.run("batch"))["batch_predictions"]
    assert third["cache"] == "miss" and third["model_version"] == 2
    assert third["recipe_key"] != m1["recipe_key"]
    out2 = _predictions(chain, third)
    assert (out2["model_version"] == 2).all()
    assert out2["row_id"].tolist() == out1["row_id"].tolist()
    assert not out2["probability"].equals(out1["probability"])


def test_a_table_in_lakefs_is_scored_at_its_commit(tmp_path, adult_sample, chain_factory,
                                                   lakefs):
    import lakefs as lakefs_sdk

    source = tmp_path / "adult.csv"
    source.write_bytes(adult_sample.read_bytes())
    client = lakefs.client()
    repo = lakefs.new_repo()
    main = lakefs_sdk.Branch(repo, "main", client=client)
    rows = pd.read_csv(adult_sample, dtype=str, keep_default_na=False).head(120)
    main.object("batch/today.parquet").upload(rows.to_parquet(index=False), mode="wb",
                                              pre_sign=False)
    main.commit("120 rows to score")
    uri = f"lakefs://{repo}/main/batch/today.parquet"
    spec = fast_adult_spec(tmp_path, source, gate=GATE,
                           deployment={"batch": {"source": uri}})
    chain = chain_factory(spec)
    assert chain.run().success

    first = materializations(chain.run("batch"))["batch_predictions"]
    assert first["cache"] == "miss" and first["rows"] == 120
    assert _predictions(chain, first)["row_id"].tolist() == list(range(120))
    # A commit that leaves the table alone is a hit; a new table is scored.
    main.object("other.txt").upload(b"unrelated", mode="wb", pre_sign=False)
    main.commit("unrelated change")
    assert materializations(chain.run("batch"))["batch_predictions"]["cache"] == "hit"
    main.object("batch/today.parquet").upload(rows.head(40).to_parquet(index=False),
                                              mode="wb", pre_sign=False)
    main.commit("40 rows to score")
    third = materializations(chain.run("batch"))["batch_predictions"]
    assert third["cache"] == "miss" and third["rows"] == 40
    assert third["source"].startswith(f"lakefs://{repo}/")
