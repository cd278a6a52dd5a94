"""Production batches → drift report and production performance → labelled rows in retraining."""

import base64
import re
from pathlib import Path

import httpx
import pandas as pd
import pytest

from pipelines.paths import model_production_dir
from tests.conftest import ADULT_CSV, fast_adult_spec, materializations
from tests.serving_support import LOOSE_GATE, Receiver, Service

pytestmark = pytest.mark.slow


def held_out(start: int, n: int) -> pd.DataFrame:
    """Adult rows after the first 3,000 (the training sample never saw them)."""
    frame = pd.read_csv(ADULT_CSV, dtype=str, keep_default_na=False)
    return frame.iloc[3000 + start:3000 + start + n].reset_index(drop=True)


def test_drift_report_performance_and_labelled_rows(tmp_path, home, adult_sample, chain_factory):
    receiver = Receiver()
    source = tmp_path / "adult.csv"
    source.write_bytes(adult_sample.read_bytes())
    spec = fast_adult_spec(tmp_path, source, gate=LOOSE_GATE, training__reference_rows=1000,
                           monitoring={"alert_webhook": receiver.url, "min_batch_rows": 200,
                                       "drift_threshold": 0.05,
                                       "min_labelled_rows": 100,
                                       "numeric": {"method": "ks", "threshold": 0.001},
                                       # Sparse: 40 countries, most rows one of them.
                                       "columns": {"native-country": {"threshold": 0.2}}})
    chain = chain_factory(spec)
    assert chain.run().success
    # The model's own production store: $TIDELINE_HOME/production/adult/.
    production = model_production_dir(home, chain.model)
    assert production == home / "production" / "adult"
    batches = production / "batches"
    batches.mkdir(parents=True)

    # A clean batch: real held-out rows.
    held_out(0, 600).to_csv(batches / "2026-11-01.csv", index=False)
    result = chain.run("monitoring")
    assert result.success
    clean = materializations(result)["drift_report"]
    assert clean["drifted"] is False and clean["engine"] == "evidently"
    assert clean["rows"] == 600 and clean["drifted_columns"] == []
    assert Path(clean["report_html"]).exists()
    assert "| age | ks | p-value |" in clean["columns_table"]
    # The per-column plot is in the table the UI shows, as an inline PNG.
    (plot,) = re.findall(r"!\[Per-column drift\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)",
                         clean["columns_table"])
    assert base64.b64decode(plot).startswith(b"\x89PNG")
    assert "drift" not in receiver.events()

    # A recalibrated measurement: ages scaled by 1.3.
    shifted = held_out(600, 600)
    shifted["age"] = (shifted["age"].astype(int) * 1.3).round().astype(int).astype(str)
    shifted.to_csv(batches / "2026-11-02.csv", index=False)
    result = chain.run("monitoring")
    drifted = materializations(result)["drift_report"]
    assert drifted["drifted"] is True and "age" in drifted["drifted_columns"]
    assert drifted["batch"] != clean["batch"] and drifted["rows"] == 600
    assert receiver.events().count("drift") == 1
    # Nothing new: the same batch is a cache hit and raises no second alert.
    again = materializations(chain.run("monitoring"))["drift_report"]
    assert again["cache"] == "hit" and receiver.events().count("drift") == 1

    # Served predictions and labels that arrive later, joined by request id.
    labelled = held_out(1200, 300)
    from pipelines.spec import load_spec

    loaded = load_spec(spec)
    columns = list(loaded.columns)
    with Service(home, spec) as svc:
        key = svc.api_key()
        ids = []
        for _, row in labelled.iterrows():
            record = {c: (float(row[c]) if c in loaded.numeric_columns
                          else (row[c] if row[c] not in ("", "?") else None)) for c in columns}
            r = httpx.post(f"{svc.url}/predict", json={"records": [record]},
                           headers={"X-API-Key": key}, timeout=30)
            assert r.status_code == 200, r.text
            ids.append(r.json()["request_id"])
    labels = production / "labels"
    labels.mkdir()
    pd.DataFrame({"request_id": ids, "label": labelled["income-per-year"]}).to_csv(
        labels / "feedback.csv", index=False)
    result = chain.run("monitoring")
    perf = materializations(result)["production_performance"]
    assert perf["labelled_rows"] == 300 and 0.6 < perf["roc_auc"] <= 1.0
    assert 0.0 <= perf["ece"] <= 1.0 and perf["status"] == "within the floor"

    # The labelled production rows flow into the next raw snapshot.
    retrain = chain.run("retrain")
    assert retrain.success
    raw = materializations(retrain)["raw_data"]
    assert raw["cache"] == "miss" and raw["labelled_production_rows"] == 300
    features = materializations(retrain)["validated_features"]
    assert features["rows"] + features["quarantined_rows"] == 3000 + 300
