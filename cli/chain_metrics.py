"""Chain metrics for Prometheus, read from the Dagster instance when scraped.

Usage: ``python -m cli.chain_metrics [--host 127.0.0.1] [--port 9109]``
(``make chain-metrics``); ``/metrics`` answers on that port.

For each model (asset keys ``<model>/<stage>``) and memoized stage, from the stage's
materializations in the instance (``DAGSTER_HOME``):

- ``tideline_chain_stage_seconds``, ``tideline_chain_stage_cache_hit`` and
  ``tideline_chain_stage_last_timestamp_seconds`` of its latest materialization;
- ``tideline_chain_materializations_total`` by ``cache`` (hit or miss) and
  ``tideline_chain_cache_hit_ratio``: the share of the model's stages whose latest
  materialization reused a stored result;
- ``tideline_chain_drift_score`` and ``tideline_chain_drifted`` (the latest drift report),
  ``tideline_chain_gate_passed`` (the latest deploy gate) and
  ``tideline_chain_gate_verdicts_total`` by verdict;
- ``tideline_chain_training_cost``: what the latest training cost (its spec's prices).

Each scrape reads only the materializations recorded since the one before, so it stays
cheap however long the history is.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pipelines.catalog import MEMOIZED

STAGES = frozenset(MEMOIZED)
PAGE = 500


@dataclass
class StageState:
    """What the exporter has read of one model's stage: counts and the latest facts."""

    after: int | None = None  # the storage id of the last materialization read
    cache: dict[str, int] = field(default_factory=dict)  # "hit"/"miss" -> materializations
    verdicts: dict[str, int] = field(default_factory=dict)  # "passed"/"blocked" -> cards
    latest: dict[str, Any] = field(default_factory=dict)  # plain metadata values
    timestamp: float | None = None


class ChainCollector:
    """A prometheus_client collector over the Dagster instance's materializations."""

    def __init__(self, instance: Any):
        self.instance = instance
        self.stages: dict[tuple[str, str], StageState] = {}
        self._lock = threading.Lock()

    def _read(self) -> None:
        import dagster as dg

        for asset_key in self.instance.get_asset_keys():
            path = asset_key.path
            if len(path) != 2 or path[1] not in STAGES:
                continue
            state = self.stages.setdefault((path[0], path[1]), StageState())
            while True:
                records = self.instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=asset_key, after_storage_id=state.after),
                    limit=PAGE, ascending=True).records
                for record in records:
                    self._add(state, record)
                if len(records) < PAGE:
                    break

    @staticmethod
    def _add(state: StageState, record: Any) -> None:
        state.after = record.storage_id
        event = record.asset_materialization
        if event is None:
            return
        meta = {k: v.value for k, v in event.metadata.items()}
        state.latest, state.timestamp = meta, record.timestamp
        if meta.get("cache") in ("hit", "miss"):
            state.cache[meta["cache"]] = state.cache.get(meta["cache"], 0) + 1
        if meta.get("gate") in ("passed", "blocked"):
            state.verdicts[meta["gate"]] = state.verdicts.get(meta["gate"], 0) + 1

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        with self._lock:
            self._read()
            stages = sorted(self.stages.items())
        by_stage = ("model", "stage")
        seconds = GaugeMetricFamily("tideline_chain_stage_seconds",
                                    "Seconds the stage's latest materialization took",
                                    labels=by_stage)
        hit = GaugeMetricFamily("tideline_chain_stage_cache_hit",
                                "1 when the stage's latest materialization reused a stored "
                                "result, 0 when it computed", labels=by_stage)
        when = GaugeMetricFamily("tideline_chain_stage_last_timestamp_seconds",
                                 "Unix time of the stage's latest materialization",
                                 labels=by_stage)
        count = CounterMetricFamily("tideline_chain_materializations",
                                    "Materializations of the stage, by cache hit or miss",
                                    labels=(*by_stage, "cache"))
        ratio = GaugeMetricFamily("tideline_chain_cache_hit_ratio",
                                  "Share of the model's stages whose latest materialization "
                                  "was a cache hit", labels=("model",))
        drift = GaugeMetricFamily("tideline_chain_drift_score",
                                  "Drift score of the latest drift report", labels=("model",))
        drifted = GaugeMetricFamily("tideline_chain_drifted",
                                    "1 when the latest drift report is over the threshold",
                                    labels=("model",))
        gate = GaugeMetricFamily("tideline_chain_gate_passed",
                                 "1 when the latest deploy gate passed, 0 when it blocked",
                                 labels=("model",))
        verdicts = CounterMetricFamily("tideline_chain_gate_verdicts",
                                       "Deploy gate verdicts of model cards",
                                       labels=("model", "verdict"))
        training = GaugeMetricFamily("tideline_chain_training_cost",
                                     "Cost of the latest training (CPU and GPU seconds at the "
                                     "spec's prices)", labels=("model",))
        hits: dict[str, list[int]] = {}
        for (model, stage), state in stages:
            meta = state.latest
            if isinstance(meta.get("seconds"), (int, float)):
                seconds.add_metric([model, stage], float(meta["seconds"]))
            if meta.get("cache") in ("hit", "miss"):
                hit.add_metric([model, stage], float(meta["cache"] == "hit"))
                hits.setdefault(model, []).append(meta["cache"] == "hit")
            if state.timestamp is not None:
                when.add_metric([model, stage], state.timestamp)
            for cache, n in sorted(state.cache.items()):
                count.add_metric([model, stage, cache], n)
            if stage == "drift_report" and isinstance(meta.get("drift_score"), (int, float)):
                drift.add_metric([model], float(meta["drift_score"]))
                drifted.add_metric([model], float(bool(meta.get("drifted"))))
            if stage == "model_card":
                if meta.get("gate") in ("passed", "blocked"):
                    gate.add_metric([model], float(meta["gate"] == "passed"))
                for verdict, n in sorted(state.verdicts.items()):
                    verdicts.add_metric([model, verdict], n)
            cost = meta.get("cost")
            if stage == "trained_weights" and isinstance(cost, dict) and "amount" in cost:
                training.add_metric([model], float(cost["amount"]))
        for model, flags in sorted(hits.items()):
            ratio.add_metric([model], sum(flags) / len(flags))
        yield from (seconds, hit, when, count, ratio, drift, drifted, gate, verdicts, training)


def registry_for(instance: Any) -> Any:
    """A registry holding only the chain collector over ``instance``."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(ChainCollector(instance))
    return registry


def main(argv: list[str] | None = None) -> None:
    import dagster as dg
    from prometheus_client import start_http_server

    parser = argparse.ArgumentParser(description="Serve the chain's metrics for Prometheus.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9109)
    args = parser.parse_args(argv)
    server, _ = start_http_server(args.port, args.host,
                                  registry_for(dg.DagsterInstance.get()))
    print(f"chain metrics on http://{args.host}:{server.server_port}/metrics", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
