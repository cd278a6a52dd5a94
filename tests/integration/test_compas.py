"""The worked COMPAS spec (datasets/compas.yaml) on real data.

Its file repeats ``decile_score`` and ``priors_count`` with identical values; the spec's
``duplicate_columns: keep_identical`` reads one copy. The bundled 2,000-row sample runs on
every clone; the full ProPublica file (``TIDELINE_COMPAS_CSV``, else
``../shared/data``) only where it is present.
"""

import csv
import io
import json
import os
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, failure_text, materializations, write_spec

COMPAS_SAMPLE = REPO / "tests" / "data" / "compas_sample.csv"
FULL = Path(os.environ.get("TIDELINE_COMPAS_CSV")
            or REPO.parent / "shared" / "data" / "compas-scores-two-years.csv")
needs_full_file = pytest.mark.skipif(
    not FULL.is_file(), reason=f"the full COMPAS file is not at {FULL} (set TIDELINE_COMPAS_CSV)")

INGEST = ("raw_source", "raw_data", "validated_features")


def _validate(chain):
    """Run the model's training job up to validated_features only (no training)."""
    job = chain.defs().resolve_job_def(chain.job("training"))
    return job.execute_in_process(instance=chain.instance, raise_on_error=False,
                                  asset_selection=[chain.key(s) for s in INGEST])


def test_the_spec_names_its_file_through_an_environment_variable_and_leaks_nothing():
    text = (REPO / "datasets" / "compas.yaml").read_text()
    assert text.splitlines()[0] == "# yaml-language-server: $schema=spec.schema.json"
    spec = yaml.safe_load(text)
    assert spec["source"]["path"].startswith("${TIDELINE_COMPAS_CSV:-")
    assert spec["source"]["duplicate_columns"] == "keep_identical"
    leaks = {"decile_score", "score_text", "v_decile_score", "is_recid", "violent_recid",
             "is_violent_recid", "start", "end", "event"}
    assert not leaks & set(spec["columns"])
    assert not [c for c in spec["columns"] if c.startswith(("r_", "vr_"))]


def test_compas_sample_validates_with_its_repeated_headers(tmp_path, chain_factory):
    spec = write_spec(tmp_path / "compas.yaml", "compas", COMPAS_SAMPLE)
    result = _validate(chain_factory(spec))
    assert result.success, failure_text(result)
    meta = materializations(result)["validated_features"]
    assert meta["rows"] == 2000 and meta["quarantined_rows"] == 0
    assert meta["columns"] == 9


def test_compas_sample_with_a_differing_copy_fails_naming_file_column_and_row(tmp_path,
                                                                            chain_factory):
    rows = list(csv.reader(io.StringIO(COMPAS_SAMPLE.read_text())))
    second = [i for i, n in enumerate(rows[0]) if n == "priors_count"][1]
    rows[8][second] = "99"  # data row 7
    source = tmp_path / "compas.csv"
    with open(source, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    result = _validate(chain_factory(write_spec(tmp_path / "compas.yaml", "compas", source)))
    assert not result.success
    line = failure_text(result).strip().splitlines()[0]
    assert line.startswith(f"{source}, column 'priors_count'")
    assert "row 7 ('99'" in line and "keep_first" in line
    # keep_first takes the first copy and validates.
    spec = write_spec(tmp_path / "first.yaml", "compas", source,
                      source__duplicate_columns="keep_first")
    assert _validate(chain_factory(spec)).success


@needs_full_file
def test_full_compas_file_validates(tmp_path, chain_factory):
    result = _validate(chain_factory(write_spec(tmp_path / "compas.yaml", "compas", FULL)))
    assert result.success, failure_text(result)
    meta = materializations(result)["validated_features"]
    assert meta["rows"] == 7214 and meta["quarantined_rows"] == 0


@pytest.mark.slow
@needs_full_file
def test_full_compas_model_is_blocked_by_its_fairness_gate(tmp_path, chain_factory):
    # The spec says to expect this: the model repeats COMPAS's gap in error rates by race.
    chain = chain_factory(write_spec(tmp_path / "compas.yaml", "compas", FULL))
    result = chain.run()
    assert not result.success
    card = materializations(result)["model_card"]
    assert card["gate"] == "blocked" and chain.latest("deployment") is None
    store = chain.store()
    rules = json.loads(store.get_bytes(store.get_manifest(card["content_hash"]).files[
        "card.json"]))["gate"]["rules"]
    failed = [r["rule"] for r in rules if not r["passed"]]
    assert "race: equalized_odds_difference (upper 95% bound) ≤ 0.2" in failed, failed
    assert not [r for r in failed if r.startswith("roc_auc")], failed
