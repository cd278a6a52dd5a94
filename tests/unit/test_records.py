"""Typed records that cross layers: metadata markers and the monitoring verdicts."""

import pytest

from pipelines.artifacts import Markdown, PathLink, metadata_from_json, metadata_to_json
from pipelines.records import DriftSummary, PerformanceSummary


def test_markers_are_stored_in_the_memo_entry_format_and_read_back():
    metadata = {"table": Markdown("| a |\n|---|"), "report": PathLink("/store/objects/b3/x"),
                "score": 0.25, "columns": ["age"], "plain": {"__md__": "a", "other": 1}}
    stored = metadata_to_json(metadata)
    # The JSON form memo entries have always had: entries written before stay readable.
    assert stored["table"] == {"__md__": "| a |\n|---|"}
    assert stored["report"] == {"__path__": "/store/objects/b3/x"}
    assert metadata_from_json(stored) == metadata
    assert metadata_from_json({"card": {"__md__": "# card"}}) == {"card": Markdown("# card")}


def test_drift_metadata_parses_into_one_record():
    summary = DriftSummary.from_metadata({
        "drift_score": 0.42, "drift_threshold": 0.3, "drifted": True,
        "drifted_columns": ["age", "hours"], "batch": "b3:batch", "rows": 500,
        "content_hash": "b3:report"})
    assert summary == DriftSummary(drift_score=0.42, drift_threshold=0.3, drifted=True,
                                   drifted_columns=("age", "hours"), batch="b3:batch",
                                   content_hash="b3:report")
    perf = PerformanceSummary.from_metadata({"below_floor": False, "labelled_rows": 3})
    assert perf == PerformanceSummary(below_floor=False)


def test_metadata_from_another_writer_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"drift_report materialization has no 'drift_score'"):
        DriftSummary.from_metadata({"batch": "b3:x", "drift_threshold": 0.3})
    with pytest.raises(ValueError, match=r"production_performance .* 'below_floor'"):
        PerformanceSummary.from_metadata({"content_hash": "b3:y"})


def test_deployment_outcome_round_trips_through_metadata_and_names_a_missing_field():
    import pytest

    from pipelines.records import DeploymentOutcome

    deployed = DeploymentOutcome(model="adult", outcome="deployed", version="3",
                                 stable_version="2", canary_version="3", history_entry=7,
                                 role="canary", edge_bundle="/edge/adult/v3", edge_bytes=9000)
    metadata = deployed.to_metadata()
    assert "reason" not in metadata and "lakefs_tag" not in metadata
    assert DeploymentOutcome.from_metadata(metadata) == deployed
    rejected = DeploymentOutcome(model="adult", outcome="rejected", version="4",
                                 stable_version="2", canary_version="none", history_entry=8,
                                 reason="roc_auc 0.61 < 0.8")
    assert DeploymentOutcome.from_metadata(rejected.to_metadata()).reason == "roc_auc 0.61 < 0.8"
    with pytest.raises(ValueError, match="no 'history_entry' metadata"):
        DeploymentOutcome.from_metadata({k: v for k, v in metadata.items()
                                         if k != "history_entry"})
