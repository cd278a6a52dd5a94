"""What the service serves for one model, and how it changes: hot reload from its deployment head.

Each model has a :class:`ModelRuntime`. The watcher polls every model's deployment head
(one small read each). When a head changes, the models it names (stable, canary and the
previous stable, kept warm for rollback) are loaded, verified and warmed up off the event
loop, and only then is that model's routing swapped in one assignment. In-flight requests
finish on the models they started with. If a new model fails, nothing is swapped: the old
one keeps serving and ``/ready`` says what failed. A model whose head appears later (its
first deployment) is picked up by the next poll.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from pipelines import deploy
from pipelines.store import ArtifactStore
from serving import tracing
from serving.batching import MicroBatcher
from serving.config import ModelConfig
from serving.metrics import Metrics
from serving.models import LoadedModel, ModelLoadError, load_model
from serving.predlog import PredictionLog
from serving.schema import KnownValues, record_model, request_model

LOG = logging.getLogger("tideline.serving")
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Routing:
    seq: int
    stable: LoadedModel
    canary: LoadedModel | None


@dataclass(frozen=True)
class VariantFallback:
    """Traffic of one priority whose configured variant a serving version did not publish."""

    role: str  # "stable" or "canary"
    version: int | None
    priority: str  # a key of serving.variants: "high" or "normal"
    configured: str  # the variant serving.variants names, e.g. "int8"
    served: str  # the variant that answers instead: "fp32"


@dataclass
class Shared:
    """What every model's runtime uses: the store, metrics, worker threads, shared counters."""

    store: ArtifactStore
    metrics: Metrics
    batching: bool
    executor: Executor | None = None  # inference and model loading
    log_executor: Executor | None = None  # prediction log writes
    limiter: Any = None
    canary_stats: Any = None


@dataclass
class ReloadOutcome:
    """The last change of a model's deployment head the service acted on."""

    status: str  # "none yet", "ok" or "refused"
    entry: int | None = None
    time: float | None = None
    seconds: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class ModelRuntime:
    config: ModelConfig
    shared: Shared
    routing: Routing | None = None
    deployed: bool = False  # the head names a stable version
    models: dict[str, LoadedModel] = field(default_factory=dict)
    batchers: dict[tuple[str, str], MicroBatcher] = field(default_factory=dict)
    # Trace id of the run that trained each loaded model, by trained_weights (request spans
    # link to it); only models whose deployment entry recorded one.
    training_traces: dict[str, str] = field(default_factory=dict)
    seen_seq: int | None = None
    last_reload: ReloadOutcome = field(default_factory=lambda: ReloadOutcome("none yet"))
    decided: set[int] = field(default_factory=set)
    predlog: PredictionLog | None = None
    # The stable version's categorical values, which the record schema (the API docs) lists.
    known: KnownValues = field(init=False)
    record_model: type[BaseModel] = field(init=False)
    request_model: type[BaseModel] = field(init=False)

    def __post_init__(self) -> None:
        self.known = KnownValues(self.config.name)
        self.record_model = record_model(list(self.config.numeric),
                                         list(self.config.categorical), self.known)
        self.request_model = request_model(self.record_model, self.config.serving.max_records)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def variants(self) -> set[str]:
        return set(self.config.serving.variants.values())

    # -- lifecycle ----------------------------------------------------------------------------
    def start_log(self) -> None:
        s = self.config.serving
        self.predlog = PredictionLog(self.config.production_dir, flush_rows=s.log_flush_rows,
                                     flush_seconds=s.log_flush_seconds,
                                     retention_files=s.log_retention_files)
        self.predlog.start(self.shared.log_executor)

    async def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()
        if self.predlog is not None:
            await self.predlog.close()

    def repair(self) -> None:
        """At start-up, rebuild a head that a killed deploy left missing or stale.

        The history is the source of truth; without this, a service started after a
        half-finished deploy would serve the old model, or nothing. Edge bundles and MLflow
        aliases are not the service's: the deployment step and ``make deploy-status
        REPAIR=1`` repair those.
        """
        from pipelines.repair import repair

        try:
            report = repair(self.shared.store, self.name)
        except Exception:  # a read-only store, a lock held too long: serve what the head says
            LOG.exception("start-up check of %s's deployment head against the history failed",
                          self.name)
            return
        for line in report.lines():
            LOG.warning("start-up repair of %s: %s", self.name, line)

    # -- reload -------------------------------------------------------------------------------
    async def refresh(self) -> None:
        loop = asyncio.get_running_loop()
        head = await loop.run_in_executor(self.shared.executor, deploy.read_head,
                                          self.shared.store, self.name)
        if head is None or head.seq == self.seen_seq:
            return
        self.seen_seq = head.seq
        self.deployed = head.stable is not None
        start = time.perf_counter()
        reloads = self.shared.metrics.reloads
        try:
            stable = await self._load(head.stable)
            canary = await self._load(head.canary)
        except Exception as exc:  # ModelLoadError, or any other: refused and reported alike
            reloads.labels(model=self.name, outcome="refused").inc()
            self.last_reload = ReloadOutcome("refused", head.seq, time.time(), error=str(exc))
            LOG.error("%s: deployment entry %s refused, still serving %s: %s", self.name,
                      head.seq, self.serving_label(), exc)
            return
        if stable is None:
            return
        self.routing = Routing(head.seq, stable, canary)
        self.known.update(stable.version, stable.trained_weights, stable.vocabularies)
        reloads.labels(model=self.name, outcome="swapped").inc()
        self.last_reload = ReloadOutcome("ok", head.seq, time.time(),
                                         round(time.perf_counter() - start, 4))
        LOG.info("%s: serving entry %s: %s", self.name, head.seq, self.serving_label())
        for fallback in self.fallbacks():
            LOG.warning("%s: version %s (%s) did not publish %s; its %s traffic is served by %s",
                        self.name, fallback.version, fallback.role, fallback.configured,
                        fallback.priority, fallback.served)
        if head.previous is not None:  # warm spare for a rollback; its failure is not fatal
            try:
                await self._load(head.previous)
            except ModelLoadError as exc:
                LOG.warning("%s: previous version kept warm for rollback cannot load: %s",
                            self.name, exc)
        keep = {m.trained_weights for m in (head.stable, head.canary, head.previous) if m}
        for tw in [t for t in self.models if t not in keep]:
            self.models.pop(tw)
            self.training_traces.pop(tw, None)
            for variant in self.variants:
                batcher = self.batchers.pop((tw, variant), None)
                if batcher is not None:
                    batcher.close()

    async def _load(self, entry: deploy.DeployedModel | None) -> LoadedModel | None:
        if entry is None:
            return None
        tw = entry.trained_weights
        if entry.training_trace:
            self.training_traces[tw] = entry.training_trace
        if tw not in self.models:
            loop = asyncio.get_running_loop()
            self.models[tw] = await loop.run_in_executor(
                self.shared.executor, load_model, self.shared.store, entry, self.variants)
        return self.models[tw]

    def fallbacks(self) -> list[VariantFallback]:
        """Traffic whose configured variant a serving version did not publish.

        Each names the priority (``serving.variants``), the configured variant and the one
        that serves it instead.
        """
        r = self.routing
        if r is None:
            return []
        out = []
        for role, model in (("stable", r.stable), ("canary", r.canary)):
            if model is None:
                continue
            for priority, variant in sorted(self.config.serving.variants.items()):
                served = model.served_variant(variant)
                if served != variant:
                    out.append(VariantFallback(role, model.version, priority, variant, served))
        return out

    def serving_label(self) -> str:
        r = self.routing
        if r is None:
            return "nothing"
        return f"stable v{r.stable.version}" + (f", canary v{r.canary.version}"
                                               if r.canary else "")

    # -- inference ----------------------------------------------------------------------------
    async def infer(self, model: LoadedModel, variant: str,
                    records: list[dict[str, Any]]) -> np.ndarray:
        feeds = model.feeds(records)
        sizes = self.shared.metrics.batch_size.labels(model=self.name, variant=variant)
        if not self.shared.batching:
            loop = asyncio.get_running_loop()
            with tracing.batch_span([tracing.current()], len(records)):
                out = await loop.run_in_executor(
                    self.shared.executor, self.shared.metrics.metered(
                        self.name, model, variant, self.config.prices), feeds)
            sizes.observe(len(records))
            return out
        key = (model.trained_weights, variant)
        batcher = self.batchers.get(key)
        if batcher is None:
            assert self.shared.executor is not None
            batcher = self.batchers[key] = MicroBatcher(
                self.shared.metrics.metered(self.name, model, variant, self.config.prices),
                self.shared.executor,
                max_batch=self.config.serving.max_batch,
                max_wait_s=self.config.serving.max_wait_ms / 1000, on_batch=sizes.observe)
        return await batcher.submit(feeds)

    # -- canary -------------------------------------------------------------------------------
    def decide(self, seq: int, decision: str, why: str) -> None:
        """Apply a canary verdict once (the history's ``expect_seq`` makes it once overall)."""
        if seq in self.decided:
            return
        self.decided.add(seq)
        LOG.warning("%s: canary verdict for entry %s: %s (%s)", self.name, seq, decision, why)
        asyncio.get_running_loop().run_in_executor(self.shared.executor, self._apply, seq,
                                                   decision, why)

    def _apply(self, seq: int, decision: str, why: str) -> None:
        action = deploy.promote if decision == "promote" else deploy.abort
        try:
            action(self.shared.store, self.name, expect_seq=seq, reason=why,
                   actor="serving canary judge")
        except deploy.DeployError as exc:
            LOG.info("%s: canary verdict not applied: %s", self.name, exc)
            return
        # MLflow follows the history; its import takes seconds, so not in this process.
        subprocess.Popen([sys.executable, "-m", "cli.deployctl", "sync-aliases"], cwd=REPO,
                         env={**os.environ, "TIDELINE_MODEL": self.name},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)

    def describe(self) -> dict[str, Any]:
        r = self.routing
        return {
            "ready": r is not None, "model": self.name, "deployed": self.deployed,
            "entry": r.seq if r else None,
            "stable": r.stable.version if r else None,
            "canary": r.canary.version if r and r.canary else None,
            "warm_versions": sorted(str(m.version) for m in self.models.values()),
            "last_reload": self.last_reload.to_dict(),
            # e.g. normal traffic configured for int8, which this version dropped -> fp32
            "variant_fallbacks": [asdict(f) for f in self.fallbacks()],
            "batching": self.shared.batching,
        }
