"""drift_report and production_performance: the newest production batch against the champion."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.artifacts import Markdown, PathLink, StageFailure, StageResult, read_frame
from pipelines.drift import column_tests, drift_plot, drift_score, evidently_report, fast_path
from pipelines.figures import data_uri
from pipelines.spec import DatasetSpec
from pipelines.store import ArtifactStore

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.deploy import DeployedModel


def reference_frame(store: ArtifactStore, trained_weights: str) -> pd.DataFrame:
    """The training reference saved with a model (``reference`` frame of its weights)."""
    return read_frame(store, store.get_manifest(trained_weights), "reference")


def build_drift_report(spec: DatasetSpec, store: ArtifactStore, *, batch: pd.DataFrame,
                       batch_files: list[str], reference_weights: str) -> StageResult:
    reference = reference_frame(store, reference_weights)
    columns = [c for c in spec.columns if c in reference.columns]
    missing = [c for c in columns if c not in batch.columns]
    if missing:
        raise StageFailure(f"production batch ({', '.join(batch_files[-3:])}): columns "
                           f"{missing} are missing; rule 'batch has the model's features'")
    tests = column_tests(spec, columns)
    files: dict[str, bytes] = {}
    if len(batch) <= spec.monitoring.evidently_max_rows:
        rows, html = evidently_report(reference, batch, tests)
        files["report.html"] = html
        engine = "evidently"
    else:
        rows = fast_path(reference, batch, tests)
        engine = "fast path"
    score = drift_score(rows)
    drifted = [r["column"] for r in rows if r["drifted"]]
    files["drift.png"] = drift_plot(rows, score, spec.monitoring.drift_threshold)
    import pandas as pd

    table = pd.DataFrame(rows)
    over = score >= spec.monitoring.drift_threshold
    return StageResult(
        kind="drift_report", files=files, frames={"columns": table},
        info={"batch_files": batch_files, "reference": reference_weights, "engine": engine},
        metadata={"drift_score": round(score, 6), "drifted": bool(over),
                  "drift_threshold": spec.monitoring.drift_threshold,
                  "drifted_columns": drifted, "rows": int(len(batch)),
                  "reference_rows": int(len(reference)), "engine": engine,
                  "columns_table": Markdown(f"{_markdown(rows)}\n\n![Per-column drift]"
                                            f"({data_uri(files['drift.png'])})")},
    )


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| column | method | statistic | value | threshold | drifted |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['column']} | {r['method']} | {r['statistic']} | {r['value']:.4g} "
                     f"| {r['threshold']:g} | {'**yes**' if r['drifted'] else 'no'} |")
    return "\n".join(lines)


@dataclass
class DriftInputs:
    """What one drift report compares: the newest production batch and the stable model."""

    spec: DatasetSpec
    store: ArtifactStore
    stable: DeployedModel
    batch_hash: str
    batch_files: list[str]
    frame: pd.DataFrame

    @classmethod
    def find(cls, spec: DatasetSpec, store: ArtifactStore, root: Path,
             stat_cache: Any) -> DriftInputs:
        """The newest batch of at least ``monitoring.min_batch_rows`` rows.

        Raises:
            ValueError: no deployed model, or too few production rows yet (one line).
        """
        from pipelines import deploy
        from pipelines.production import fingerprint, newest_batch, scan

        stable = deploy.current(store, spec.name).stable
        if stable is None:
            raise ValueError(f"{spec.name} has no deployed model: drift is measured against "
                             "the stable model's training reference; deploy one first")
        files = scan(root, stat_cache)
        picked = newest_batch(files, spec.monitoring.min_batch_rows)
        if picked is None:
            raise ValueError(
                f"the production store {root} holds {len(files)} files with fewer than "
                f"monitoring.min_batch_rows = {spec.monitoring.min_batch_rows} rows in all; "
                "nothing to compare yet")
        chosen, frame = picked
        return cls(spec, store, stable, fingerprint(chosen, root),
                   [str(f.path.relative_to(root)) for f in chosen], frame)

    def report(self) -> StageResult:
        result = build_drift_report(self.spec, self.store, batch=self.frame,
                                    batch_files=self.batch_files,
                                    reference_weights=self.stable.trained_weights)
        result.metadata |= {"batch": self.batch_hash, "model_version": self.stable.version}
        return result

    def on_saved(self, content_hash: str, result: StageResult) -> None:
        """Link the stored HTML report and raise the drift alert when the batch drifted."""
        from pipelines.alerts import send_alert

        if "report.html" in result.files:
            manifest = self.store.get_manifest(content_hash)
            result.metadata["report_html"] = PathLink(
                self.store.object_url(manifest.files["report.html"]))
        if result.metadata["drifted"]:
            mon = self.spec.monitoring
            send_alert(mon.alert_webhook, "drift", self.spec.name,
                       f"drift score {result.metadata['drift_score']:.2f} ≥ "
                       f"{mon.drift_threshold:g} on batch {self.batch_hash[:19]}…; drifted: "
                       f"{', '.join(result.metadata['drifted_columns'])}",
                       {"batch": self.batch_hash, "files": self.batch_files[-5:],
                        "drift_score": result.metadata["drift_score"]})


def build_performance(spec: DatasetSpec, joined: pd.DataFrame) -> StageResult:
    from pipelines.production import performance

    mon = spec.monitoring
    if len(joined) < mon.min_labelled_rows:
        return StageResult(kind="production_performance", info={"rows": int(len(joined))},
                           metadata={"labelled_rows": int(len(joined)), "below_floor": False,
                                     "status": f"waiting for {mon.min_labelled_rows} "
                                               f"labelled rows (have {len(joined)})"})
    perf = performance(joined, spec)
    failing = [f"{k} {perf[k]:.4f} < {floor:g}" for k, floor in mon.performance_floor.items()
               if perf.get(k) is not None and perf[k] < floor]
    metadata = {k: round(float(perf[k]), 6) for k in ("accuracy", "log_loss", "ece", "brier")}
    if perf["roc_auc"] is not None:
        metadata["roc_auc"] = round(float(perf["roc_auc"]), 6)
    metadata |= {"labelled_rows": int(len(joined)), "below_floor": bool(failing),
                 "floor_failures": failing, "by_version": perf["by_version"],
                 "status": "below the floor" if failing else "within the floor"}
    return StageResult(kind="production_performance", info={"rows": int(len(joined))},
                       frames={"labelled": joined}, metadata=metadata)
