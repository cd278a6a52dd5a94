"""What the service is serving, and how it changes: hot reload from the deployment head.

The watcher polls the deployment head (one small read). When it changes, the models it
names (stable, canary and the previous stable, kept warm for rollback) are loaded,
verified and warmed up off the event loop, and only then is the routing swapped in one
assignment. In-flight requests finish on the models they started with. If a new model
fails, nothing is swapped: the old one keeps serving and ``/ready`` says what failed.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import deploy
from pipelines.store import ArtifactStore
from serving.batching import MicroBatcher
from serving.config import ServiceConfig
from serving.metrics import Metrics
from serving.models import LoadedModel, ModelLoadError, load_model

LOG = logging.getLogger("tideline.serving")
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Routing:
    seq: int
    stable: LoadedModel
    canary: LoadedModel | None


class Runtime:
    def __init__(self, config: ServiceConfig):
        self.config = config
        self.store = ArtifactStore(config.store_root)
        self.metrics = Metrics()
        self.variants = set(config.serving.variants.values())
        self.routing: Routing | None = None
        self.models: dict[str, LoadedModel] = {}
        self.batchers: dict[tuple[str, str], MicroBatcher] = {}
        self.seen_seq: int | None = None
        self.last_reload: dict[str, Any] = {"status": "none yet"}
        self.decided: set[int] = set()
        self.executor: Executor | None = None
        self.limiter: Any = None
        self.canary_stats: Any = None
        self.predlog: Any = None

    # -- reload -----------------------------------------------------------------------------
    def repair(self) -> None:
        """At start-up, rebuild a head that a killed deploy left missing or stale.

        The history is the source of truth; without this, a service started after a
        half-finished deploy would serve the old model, or nothing. Edge bundles and MLflow
        aliases are not the service's: the deployment step and ``make deploy-status
        REPAIR=1`` repair those.
        """
        from pipelines.repair import repair

        try:
            report = repair(self.store, self.config.model_name)
        except Exception:  # a read-only store, a lock held too long: serve what the head says
            LOG.exception("start-up check of the deployment head against the history failed")
            return
        for line in report.lines():
            LOG.warning("start-up repair: %s", line)

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_s)
            try:
                await self.refresh()
            except Exception:  # keep watching whatever one poll hit
                LOG.exception("deployment poll failed")

    async def refresh(self) -> None:
        loop = asyncio.get_running_loop()
        head = await loop.run_in_executor(self.executor, deploy.head, self.store,
                                          self.config.model_name)
        if head is None or head["seq"] == self.seen_seq:
            return
        self.seen_seq = head["seq"]
        start = time.perf_counter()
        try:
            stable = await self._load(head["stable"])
            canary = await self._load(head["canary"]) if head["canary"] else None
        except ModelLoadError as exc:
            self.metrics.reloads.labels(outcome="refused").inc()
            self.last_reload = {"status": "refused", "entry": head["seq"], "error": str(exc),
                                "time": time.time()}
            LOG.error("deployment entry %s refused, still serving %s: %s", head["seq"],
                      self._serving_label(), exc)
            return
        if stable is None:
            return
        self.routing = Routing(head["seq"], stable, canary)
        self.metrics.reloads.labels(outcome="swapped").inc()
        self.last_reload = {"status": "ok", "entry": head["seq"], "time": time.time(),
                            "seconds": round(time.perf_counter() - start, 4)}
        LOG.info("serving entry %s: %s", head["seq"], self._serving_label())
        if head.get("previous"):  # warm spare for a rollback; its failure is not fatal
            try:
                await self._load(head["previous"])
            except ModelLoadError as exc:
                LOG.warning("previous version kept warm for rollback cannot load: %s", exc)
        keep = {m["trained_weights"] for m in (head["stable"], head["canary"],
                                                head.get("previous")) if m}
        for tw in [t for t in self.models if t not in keep]:
            self.models.pop(tw)
            for variant in self.variants:
                batcher = self.batchers.pop((tw, variant), None)
                if batcher is not None:
                    batcher.close()

    async def _load(self, entry: dict[str, Any] | None) -> LoadedModel | None:
        if entry is None:
            return None
        tw = entry["trained_weights"]
        if tw not in self.models:
            loop = asyncio.get_running_loop()
            self.models[tw] = await loop.run_in_executor(
                self.executor, load_model, self.store, entry, self.variants)
        return self.models[tw]

    def _serving_label(self) -> str:
        r = self.routing
        if r is None:
            return "nothing"
        return f"stable v{r.stable.version}" + (f", canary v{r.canary.version}"
                                               if r.canary else "")

    # -- inference ----------------------------------------------------------------------------
    async def infer(self, model: LoadedModel, variant: str,
                    records: list[dict[str, Any]]) -> np.ndarray:
        feeds = model.feeds(records)
        if not self.config.batching:
            loop = asyncio.get_running_loop()
            out = await loop.run_in_executor(self.executor, model.run, variant, feeds)
            self.metrics.batch_size.labels(variant=variant).observe(len(records))
            return out
        key = (model.trained_weights, variant)
        batcher = self.batchers.get(key)
        if batcher is None:
            batcher = self.batchers[key] = MicroBatcher(
                lambda f, m=model, v=variant: m.run(v, f), self.executor,
                max_batch=self.config.serving.max_batch,
                max_wait_s=self.config.serving.max_wait_ms / 1000,
                on_batch=self.metrics.batch_size.labels(variant=variant).observe)
        return await batcher.submit(feeds)

    # -- canary -------------------------------------------------------------------------------
    def decide(self, seq: int, decision: str, why: str) -> None:
        """Apply a canary verdict once (the history's ``expect_seq`` makes it once overall)."""
        if seq in self.decided:
            return
        self.decided.add(seq)
        LOG.warning("canary verdict for entry %s: %s (%s)", seq, decision, why)
        asyncio.get_running_loop().run_in_executor(self.executor, self._apply, seq, decision,
                                                   why)

    def _apply(self, seq: int, decision: str, why: str) -> None:
        action = deploy.promote if decision == "promote" else deploy.abort
        try:
            action(self.store, self.config.model_name, expect_seq=seq, reason=why,
                   actor="serving canary judge")
        except deploy.DeployError as exc:
            LOG.info("canary verdict not applied: %s", exc)
            return
        # MLflow follows the history; its import takes seconds, so not in this process.
        subprocess.Popen([sys.executable, "-m", "cli.deployctl", "sync-aliases"], cwd=REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)

    def describe(self) -> dict[str, Any]:
        r = self.routing
        return {
            "ready": r is not None, "model": self.config.model_name,
            "entry": r.seq if r else None,
            "stable": r.stable.version if r else None,
            "canary": r.canary.version if r and r.canary else None,
            "warm_versions": sorted(str(m.version) for m in self.models.values()),
            "last_reload": self.last_reload,
            "batching": self.config.batching,
        }
