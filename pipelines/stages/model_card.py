"""model_card: held-out metrics, size and latency per variant, baselines, plots, lineage.

The features are streamed in batches sized by the memory budget: the training and
validation rows once each (the baselines' rows, at most ``BASELINE_MAX_TRAIN_ROWS`` of
each), then the test rows once, scoring every published variant, the champion and the
baselines on each batch. Only per-row arrays (probabilities, labels, row ids, group
codes) are kept across batches, and the card is the same whatever the budget.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines import baselines as baseline_models
from pipelines.artifacts import (
    FrameWriter,
    Markdown,
    SpooledFrame,
    StageResult,
    iter_frame,
    metadata_to_json,
    read_file,
)
from pipelines.baselines import BOOSTING, BaselineFit, FittedBaselines, RowSample
from pipelines.cost import Cost, Prices, cost, hardware, prices
from pipelines.evaluation import latency, metrics
from pipelines.features import LABEL_COLUMN, ROW_COLUMN, SPLIT_COLUMN
from pipelines.figures import inline
from pipelines.hashing import canonical_json
from pipelines.model_card import (
    fairness_plots,
    gate_table,
    gate_verdict,
    plots,
    render_html,
    render_markdown,
)
from pipelines.progress import RowProgress
from pipelines.quantize import ChunkedScorer, session
from pipelines.recipe import thread_count
from pipelines.resources import batch_rows, memory_budget
from pipelines.spec import DatasetSpec
from pipelines.store import ArtifactStore, Manifest

if TYPE_CHECKING:
    from pipelines.deploy import DeployedModel
VARIANTS = ("fp32", "int8", "fp16")


GATE_CHECK = "deploy_gate"
# What one streamed row costs in memory at the stage's widest point: a test batch (text
# as categoricals) with the ONNX inputs and baseline design matrices made from it, or a
# training batch on its way into the baselines' compact rows.
ROW_BYTES = 2_000
# Latency is timed on this many of the first test rows.
LATENCY_ROWS = 256
# Rows of the predictions frame converted to Arrow at a time when it is written.
PREDICTION_SLICE_ROWS = 262_144


@dataclass(frozen=True)
class Groups:
    """One sensitive column on the test rows: each row's group code and the group names."""

    codes: np.ndarray
    names: tuple[str, ...]


@dataclass(frozen=True)
class TestScores:
    """What the card keeps of the test rows: ids, labels, groups and probabilities."""

    rows: np.ndarray
    labels: np.ndarray
    y: np.ndarray
    groups: dict[str, Groups]
    variants: dict[str, np.ndarray]
    champion: np.ndarray | None
    baselines: dict[str, np.ndarray]
    latency_feeds: dict[str, np.ndarray]


def _fairness(spec: DatasetSpec, test: TestScores, p: np.ndarray) -> dict[str, Any]:
    from pipelines.fairness import assess_codes

    return {col: assess_codes(test.y, p, test.groups[col].codes, test.groups[col].names,
                              min_group_size=spec.gate.min_group_size,
                              bootstrap=spec.gate.bootstrap, seed=spec.gate.seed)
            for col in spec.sensitive}


@dataclass(frozen=True)
class _Champion:
    """The champion as the card compares with it: scored (``params``) or not (why)."""

    entry: DeployedModel
    params: dict[str, Any] | None
    model: bytes | None
    missing: list[str]


def _load_champion(store: ArtifactStore, entry: DeployedModel | None,
                   columns: set[str]) -> _Champion | None:
    """The champion's fp32 model and inputs, or which of its columns the rows lack."""
    if entry is None:
        return None
    manifest = store.get_manifest(entry.quantized_weights)
    params = json.loads(read_file(store, manifest, "preprocess.json"))
    missing = [c for c in (*params["numeric"], *params["categorical"]) if c not in columns]
    if missing:
        return _Champion(entry, None, None, missing)
    return _Champion(entry, params, read_file(store, manifest, "model_fp32.onnx"), [])


def _champion_card(spec: DatasetSpec, champion: _Champion | None, test: TestScores
                   ) -> dict[str, Any] | None:
    """The champion's metrics and fairness on the candidate's held-out rows."""
    if champion is None:
        return None
    entry = champion.entry
    if test.champion is None:
        return {"version": entry.version, "trained_weights": entry.trained_weights,
                "missing_columns": champion.missing, "metrics": None, "fairness": None}
    return {"version": entry.version, "trained_weights": entry.trained_weights,
            "metrics": metrics(test.y, test.champion),
            "fairness": _fairness(spec, test, test.champion)}


def _baselines(spec: DatasetSpec, store: ArtifactStore, features: Manifest,
               params: dict[str, Any], per_batch: int
               ) -> tuple[FittedBaselines, RowSample, RowSample]:
    """The scikit-learn baselines fitted on the candidate's rows and features.

    They are fitted on its training rows (boosting stops early on its validation rows),
    each split capped at ``BASELINE_MAX_TRAIN_ROWS`` rows by a seeded sample.
    """
    numeric, categorical = list(params["numeric"]), list(params["categorical"])
    rows = features.info["rows"]

    def gather(split: str, seed: int) -> tuple[Any, RowSample]:
        return baseline_models.gather_rows(
            iter_frame(store, features, "features", batch_rows=per_batch,
                       columns=[*numeric, *categorical, LABEL_COLUMN],
                       where=(SPLIT_COLUMN, split), categories=True),
            rows[split], numeric=numeric, categorical=categorical, label=LABEL_COLUMN,
            seed=seed)

    train, train_sample = gather("train", baseline_models.TRAIN_SAMPLE_SEED)
    val, val_sample = gather("val", baseline_models.VALIDATION_SAMPLE_SEED)
    fitted = baseline_models.fit(train, val, numeric, categorical, LABEL_COLUMN,
                                 threads=thread_count())
    return fitted, train_sample, val_sample


def _score_test(spec: DatasetSpec, store: ArtifactStore, features: Manifest,
                params: dict[str, Any], sessions: dict[str, Any],
                champion: _Champion | None, fitted: FittedBaselines,
                per_batch: int, progress: RowProgress) -> TestScores:
    """One pass over the test rows: every model's probabilities, labels, ids, groups."""
    from threadpoolctl import threadpool_limits

    from pipelines.fairness import GroupCoder

    variants = ChunkedScorer(sessions, params, head_rows=LATENCY_ROWS)
    rival = (ChunkedScorer({"fp32": session(champion.model)}, champion.params)
             if champion is not None and champion.params is not None else None)
    coders = {col: GroupCoder() for col in spec.sensitive}
    ids: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    scores: dict[str, list[np.ndarray]] = {m.name: [] for m in fitted.models}
    with threadpool_limits(limits=thread_count()):
        for batch in iter_frame(store, features, "features", batch_rows=per_batch,
                                columns=[*spec.columns, ROW_COLUMN, LABEL_COLUMN],
                                where=(SPLIT_COLUMN, "test"), categories=True):
            if not len(batch):
                continue
            progress.add(len(batch))
            ids.append(batch[ROW_COLUMN].to_numpy(dtype="int64"))
            labels.append(batch[LABEL_COLUMN].to_numpy())
            variants.add(batch)
            if rival is not None:
                rival.add(batch)
            for col, coder in coders.items():
                coder.add(batch[col])
            for name, p in fitted.predict(batch).items():
                scores[name].append(p)
    groups = {}
    for col, coder in coders.items():
        codes, names = coder.finish()
        groups[col] = Groups(codes, names)
    label = np.concatenate(labels)
    return TestScores(
        rows=np.concatenate(ids), labels=label, y=label.astype(int), groups=groups,
        variants=variants.finish(),
        champion=rival.finish()["fp32"] if rival is not None else None,
        baselines={name: np.concatenate(parts) for name, parts in scores.items()},
        latency_feeds=variants.head)


def _predictions(store: ArtifactStore, test: TestScores) -> SpooledFrame:
    """The stored predictions frame: row id, label and each variant's probability.

    It is written from the arrays a slice at a time, never held as one frame and one
    Parquet buffer.
    """
    import pyarrow as pa

    columns = {ROW_COLUMN: test.rows, LABEL_COLUMN: test.labels} | {
        f"p_{variant}": p for variant, p in test.variants.items()}
    schema = pa.schema([(ROW_COLUMN, pa.int64()), (LABEL_COLUMN, pa.float32())]
                       + [(name, pa.float64()) for name in list(columns)[2:]])
    with FrameWriter(store, schema) as out:
        for start in range(0, len(test.rows), PREDICTION_SLICE_ROWS):
            out.write(pa.table({name: values[start:start + PREDICTION_SLICE_ROWS]
                                for name, values in columns.items()}, schema=schema))
        return out.close()


def recorded_cost(metadata: Mapping[str, Any], content_hash: str) -> Cost | None:
    """The cost a trained_weights materialization recorded, if it is of ``content_hash``.

    Args:
        metadata: The materialization's metadata as plain values (``cost`` is what
            `pipelines.stages.training.build_trained_weights` put there).
        content_hash: The trained_weights the card is for; another's cost is not its cost.
    """
    if metadata.get("content_hash") != content_hash:
        return None
    return Cost.from_json(metadata.get("cost"))  # None when an older version recorded it


def _cost_card(training: Cost | None, fits: list[BaselineFit], price: Prices,
               threads: int) -> dict[str, Any]:
    """The run's compute bill: the training's cost and each baseline fit's.

    A baseline's cost is priced on the CPU time its fit used (all threads), as training's
    is, so the two compare.
    """
    here = hardware()
    return {
        "training": training.to_json() if training is not None else None,
        "baselines": {b.name: {"title": b.title, "threads": threads}
                      | cost(b.cpu_seconds, 0.0, here, price).to_json()
                      for b in fits},
        "prices": {"cpu_core_hour": price.cpu_core_hour, "gpu_hour": dict(price.gpu_hour),
                   "currency": price.currency},
    }


def build_card(spec: DatasetSpec, store: ArtifactStore, features: Manifest, weights: Manifest,
               variants: Manifest, lineage: dict[str, str],
               champion: DeployedModel | None = None,
               on_progress: Callable[[str], None] | None = None,
               raw_data: str | None = None, training_cost: Cost | None = None) -> StageResult:
    """Evaluate every variant, compare with the champion, judge the deploy gate.

    ``on_progress`` gets a line every few seconds of the pass over the test rows.
    ``raw_data`` (the content hash of the raw data the run read) is a fact of the run: the
    card shown for the run names it in its lineage; the stored card, whose content the
    recipe fixes, starts at the validated features. So is ``training_cost`` (what training
    these weights cost, see `recorded_cost`): the card shown for the run puts it in a Cost
    table beside the baselines' cost.
    """
    from pipelines.gate import judge

    per_batch = batch_rows(memory_budget(spec), ROW_BYTES)
    params = json.loads(read_file(store, variants, "preprocess.json"))
    parity = json.loads(read_file(store, variants, "parity.json"))
    training = json.loads(read_file(store, weights, "training.json"))
    # The quantization stage publishes the variants that earn their place; the others are
    # named in its info with the reason they were dropped.
    dropped = {str(k): str(v) for k, v in sorted((variants.info.get("dropped") or {}).items())}
    published = [v for v in VARIANTS if f"model_{v}.onnx" in variants.files and v not in dropped]
    models = {v: read_file(store, variants, f"model_{v}.onnx") for v in published}
    sessions = {v: session(model) for v, model in models.items()}
    # The champion is scored on the columns the card reads; one that needs others is not.
    rival = _load_champion(store, champion,
                           {*spec.columns, ROW_COLUMN, LABEL_COLUMN, SPLIT_COLUMN})
    # The baselines are fitted before the test rows stream, and their training rows are
    # let go before then.
    fitted, train_sample, val_sample = _baselines(spec, store, features, params, per_batch)
    progress = RowProgress(on_progress, "variants, champion and baselines scored",
                           int(features.info["rows"]["test"]))
    test = _score_test(spec, store, features, params, sessions, rival, fitted, per_batch,
                       progress)
    y = test.y
    probabilities = test.variants
    card_variants: dict[str, Any] = {}
    latencies: dict[str, list[dict[str, Any]]] = {}
    for variant in published:
        card_variants[variant] = {
            "metrics": metrics(y, probabilities[variant]),
            "size_bytes": len(models[variant]),
            "parity_max_abs_diff": parity.get(variant, {}).get("max_abs_diff", 0.0),
        }
        # Latency is timed on the first rows (a fact of the run, not stored in the card).
        latencies[variant] = [latency(sessions[variant], test.latency_feeds, 1),
                              latency(sessions[variant], test.latency_feeds, LATENCY_ROWS)]
    fairness = _fairness(spec, test, probabilities["fp32"])
    baseline = _champion_card(spec, rival, test)
    champion_p = test.champion
    fits = fitted.results(test.baselines)
    baselines = {b.name: {"title": b.title,
                          "settings": baseline_models.describe(b.name, train_sample, val_sample),
                          "train_rows": train_sample.rows,
                          **({"validation_rows": val_sample.rows} if b.name == BOOSTING else {}),
                          "metrics": metrics(y, b.probabilities)} for b in fits}
    verdict = judge(spec.gate, card_variants["fp32"]["metrics"], baseline, fairness,
                    baselines={name: b["metrics"] for name, b in baselines.items()})
    card = {
        "fairness": fairness, "champion": baseline, "gate": verdict, "baselines": baselines,
        "dropped_variants": dropped,
        "dataset": spec.name, "description": spec.description,
        "intended_use": spec.model_card.intended_use, "limitations": spec.model_card.limitations,
        "target": spec.target.column, "positive": str(spec.target.positive),
        "features": list(spec.columns), "rows": features.info["rows"],
        "variants": card_variants, "lineage": lineage,
        "training": {"best_epoch": training["best_epoch"], "epochs_run": training["epochs_run"],
                     "patience": training["config"]["patience"], "device": training["device"],
                     "hidden": training["config"].get("hidden"),
                     "architecture": str(weights.info.get("architecture", "mlp"))},
    }
    markdown = render_markdown(card)
    # Fit seconds, like latency, are facts of the run: shown for it, never stored.
    seconds = {b.name: b.fit_seconds for b in fits}
    bill = _cost_card(training_cost, fits, prices(spec.cost), thread_count())
    timed = card | {"variants": {v: card_variants[v] | {"latency": latencies[v]}
                                 for v in published},
                    "baselines": {n: b | {"fit_seconds": seconds[n]}
                                  for n, b in baselines.items()},
                    "cost": bill,
                    "lineage": ({"raw_data": raw_data} if raw_data else {}) | lineage}
    references = {f"{b.title} (baseline)": b.probabilities for b in fits}
    if champion_p is not None and baseline is not None:
        references[f"champion v{baseline['version']}"] = champion_p
    images = plots(y, probabilities, references) | fairness_plots(fairness)
    predictions = _predictions(store, test)
    fp32 = card_variants["fp32"]["metrics"]
    return StageResult(
        kind="model_card",
        files={"card.md": markdown.encode(), "card.html": render_html(card, images).encode(),
               "card.json": canonical_json(card), "gate.json": canonical_json(verdict),
               **images},
        frames={"predictions": predictions},
        metadata={"model_card": Markdown(render_markdown(timed, inline(images))),
                  "latency_ms": {v: {f"batch_{t['batch']}": round(t["median_ms"], 4)
                                     for t in latencies[v]} for v in published},
                  "baselines": {n: {"roc_auc": round(b["metrics"]["roc_auc"], 6),
                                    "fit_seconds": round(seconds[n], 3),
                                    "cost": bill["baselines"][n]["amount"]}
                                for n, b in baselines.items()},
                  **({"training_cost": training_cost.to_json()["amount"]}
                     if training_cost is not None else {}),
                  "variants_dropped": dropped,
                  "roc_auc": round(fp32["roc_auc"], 6), "accuracy": round(fp32["accuracy"], 6),
                  "f1": round(fp32["f1"], 6), "log_loss": round(fp32["log_loss"], 6),
                  "ece": round(fp32["ece"], 6), "test_rows": int(len(y)),
                  "gate": "passed" if verdict["passed"] else "blocked",
                  "champion_version": str(baseline["version"]) if baseline else "none"},
        checks=[{"name": GATE_CHECK, "column": "", "passed": verdict["passed"],
                 "row_level": False,
                 "rule": "; ".join(r["rule"] for r in verdict["rules"] if not r["passed"])
                 or "all gate rules hold",
                 "failed_rows": 0, "failed_fraction": 0.0, "examples": [],
                 "rules": [{"rule": r["rule"], "passed": r["passed"], "failed_rows": 0}
                           for r in verdict["rules"]],
                 # What the UI shows for the check: the verdict and the rules' table.
                 "metadata": metadata_to_json({
                     "verdict": gate_verdict(verdict).replace("**", ""),
                     "rules": Markdown(gate_table(verdict)),
                     "failed_rules": sum(not r["passed"] for r in verdict["rules"]),
                     "champion_version": str(baseline["version"]) if baseline else "none"})}],
    )
