"""model_card: held-out metrics, size and latency per variant, baselines, plots, lineage."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.artifacts import Markdown, StageResult, read_file, read_splits
from pipelines.baselines import SETTINGS as BASELINE_SETTINGS
from pipelines.baselines import BaselineFit, fit_baselines
from pipelines.evaluation import latency, metrics
from pipelines.features import LABEL_COLUMN, ROW_COLUMN, SPLIT_COLUMN, onnx_feeds
from pipelines.hashing import canonical_json
from pipelines.model_card import fairness_plots, plots, render_html, render_markdown
from pipelines.quantize import predict_rows, session
from pipelines.recipe import thread_count
from pipelines.spec import DatasetSpec
from pipelines.store import ArtifactStore, Manifest

if TYPE_CHECKING:
    from pipelines.deploy import DeployedModel
VARIANTS = ("fp32", "int8", "fp16")


GATE_CHECK = "deploy_gate"


def _fairness(spec: DatasetSpec, test: Any, p: np.ndarray) -> dict[str, Any]:
    from pipelines.fairness import assess

    y = test[LABEL_COLUMN].to_numpy(dtype=int)
    return {col: assess(y, p, test[col].astype(object).where(test[col].notna(), "missing"),
                        min_group_size=spec.gate.min_group_size,
                        bootstrap=spec.gate.bootstrap, seed=spec.gate.seed)
            for col in spec.sensitive}


def _champion(spec: DatasetSpec, store: ArtifactStore, test: Any, entry: DeployedModel | None
              ) -> tuple[dict[str, Any] | None, np.ndarray | None]:
    """The champion's metrics and fairness on the candidate's held-out rows.

    Also its probabilities there (None when it cannot be scored), for the ROC plot.
    """
    if entry is None:
        return None, None
    manifest = store.get_manifest(entry.quantized_weights)
    params = json.loads(read_file(store, manifest, "preprocess.json"))
    missing = [c for c in (*params["numeric"], *params["categorical"]) if c not in test.columns]
    if missing:
        return {"version": entry.version, "trained_weights": entry.trained_weights,
                "missing_columns": missing, "metrics": None, "fairness": None}, None
    p = predict_rows(session(read_file(store, manifest, "model_fp32.onnx")), test, params)
    y = test[LABEL_COLUMN].to_numpy(dtype=int)
    return {"version": entry.version, "trained_weights": entry.trained_weights,
            "metrics": metrics(y, p), "fairness": _fairness(spec, test, p)}, p


def _baselines(train: Any, val: Any, test: Any, params: dict[str, Any]) -> list[BaselineFit]:
    """The scikit-learn baselines on the candidate's rows and features (train, val, test)."""
    return fit_baselines(train, val, test, list(params["numeric"]), list(params["categorical"]),
                         LABEL_COLUMN, threads=thread_count())


def build_card(spec: DatasetSpec, store: ArtifactStore, features: Manifest, weights: Manifest,
               variants: Manifest, lineage: dict[str, str],
               champion: DeployedModel | None = None) -> StageResult:
    """Evaluate every variant, compare with the champion, judge the deploy gate."""
    from pipelines.gate import judge

    # Each split alone, with the columns the card reads (features, row ids, labels).
    test, train, val = read_splits(store, features, "features", ("test", "train", "val"),
                                   by=SPLIT_COLUMN,
                                   columns=[*spec.columns, ROW_COLUMN, LABEL_COLUMN, SPLIT_COLUMN])
    params = json.loads(read_file(store, variants, "preprocess.json"))
    parity = json.loads(read_file(store, variants, "parity.json"))
    training = json.loads(read_file(store, weights, "training.json"))
    # Latency is timed on the first rows; predictions are made in batches (`predict_rows`).
    feeds = onnx_feeds(test.iloc[:256], params)
    y = test[LABEL_COLUMN].to_numpy(dtype=int)
    # The quantization stage publishes the variants that earn their place; the others are
    # named in its info with the reason they were dropped.
    dropped = {str(k): str(v) for k, v in sorted((variants.info.get("dropped") or {}).items())}
    published = [v for v in VARIANTS if f"model_{v}.onnx" in variants.files and v not in dropped]
    probabilities: dict[str, np.ndarray] = {}
    card_variants: dict[str, Any] = {}
    latencies: dict[str, list[dict[str, Any]]] = {}
    for variant in published:
        model = read_file(store, variants, f"model_{variant}.onnx")
        sess = session(model)
        p = predict_rows(sess, test, params)
        probabilities[variant] = p
        card_variants[variant] = {
            "metrics": metrics(y, p),
            "size_bytes": len(model),
            "parity_max_abs_diff": parity.get(variant, {}).get("max_abs_diff", 0.0),
        }
        latencies[variant] = [latency(sess, feeds, 1), latency(sess, feeds, 256)]
    fairness = _fairness(spec, test, probabilities["fp32"])
    baseline, champion_p = _champion(spec, store, test, champion)
    fits = _baselines(train, val, test, params)
    baselines = {b.name: {"title": b.title, "settings": BASELINE_SETTINGS[b.name],
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
    timed = card | {"variants": {v: card_variants[v] | {"latency": latencies[v]}
                                 for v in published},
                    "baselines": {n: b | {"fit_seconds": seconds[n]}
                                  for n, b in baselines.items()}}
    references = {f"{b.title} (baseline)": b.probabilities for b in fits}
    if champion_p is not None and baseline is not None:
        references[f"champion v{baseline['version']}"] = champion_p
    images = plots(y, probabilities, references) | fairness_plots(fairness)
    predictions = test[[ROW_COLUMN, LABEL_COLUMN]].copy()
    for variant, p in probabilities.items():
        predictions[f"p_{variant}"] = p
    fp32 = card_variants["fp32"]["metrics"]
    return StageResult(
        kind="model_card",
        files={"card.md": markdown.encode(), "card.html": render_html(markdown, images).encode(),
               "card.json": canonical_json(card), "gate.json": canonical_json(verdict),
               **images},
        frames={"predictions": predictions},
        metadata={"model_card": Markdown(render_markdown(timed)),
                  "latency_ms": {v: {f"batch_{t['batch']}": round(t["median_ms"], 4)
                                     for t in latencies[v]} for v in published},
                  "baselines": {n: {"roc_auc": round(b["metrics"]["roc_auc"], 6),
                                    "fit_seconds": round(seconds[n], 3)}
                                for n, b in baselines.items()},
                  "variants_dropped": dropped,
                  "roc_auc": round(fp32["roc_auc"], 6), "accuracy": round(fp32["accuracy"], 6),
                  "f1": round(fp32["f1"], 6), "log_loss": round(fp32["log_loss"], 6),
                  "ece": round(fp32["ece"], 6), "test_rows": int(len(test)),
                  "gate": "passed" if verdict["passed"] else "blocked",
                  "champion_version": str(baseline["version"]) if baseline else "none"},
        checks=[{"name": GATE_CHECK, "column": "", "passed": verdict["passed"],
                 "row_level": False,
                 "rule": "; ".join(r["rule"] for r in verdict["rules"] if not r["passed"])
                 or "all gate rules hold",
                 "failed_rows": 0, "failed_fraction": 0.0, "examples": [],
                 "rules": [{"rule": r["rule"], "passed": r["passed"], "failed_rows": 0}
                           for r in verdict["rules"]]}],
    )
