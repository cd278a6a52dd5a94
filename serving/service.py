"""Every model of the instance in one process: shared workers and counters, one runtime each.

A model is *deployed* once its deployment head names a stable version; until then (or when
its spec failed to load, or the name is unknown) requests for it answer 404 naming the
deployed models. A deployed model that could not be loaded yet answers 503.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pipelines.store import ArtifactStore
from serving.canary import MemoryCanaryStats, RedisCanaryStats
from serving.config import ServiceConfig
from serving.http import ServiceError
from serving.metrics import Metrics
from serving.runtime import ModelRuntime, Shared
from serving.security import MemoryRateLimiter, RedisRateLimiter

LOG = logging.getLogger("tideline.serving")


@dataclass
class Service:
    config: ServiceConfig
    shared: Shared
    runtimes: dict[str, ModelRuntime]

    @classmethod
    def build(cls, config: ServiceConfig) -> Service:
        shared = Shared(ArtifactStore(config.store_root), Metrics(), config.batching)
        return cls(config, shared, {m.name: ModelRuntime(m, shared) for m in config.models})

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        for problem in self.config.spec_errors:
            LOG.error("not serving %s: %s", problem.path, problem.message)
        if self.config.default_model is None:
            LOG.warning("POST /predict has no model: %s", self.config.default_problem)
        shared = self.shared
        shared.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="infer")
        shared.log_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predlog")
        if self.config.redis_url:
            shared.limiter = RedisRateLimiter(self.config.redis_url)
            shared.canary_stats = RedisCanaryStats(self.config.redis_url)
        else:
            shared.limiter = MemoryRateLimiter()
            shared.canary_stats = MemoryCanaryStats()
        loop = asyncio.get_running_loop()
        for rt in self.runtimes.values():
            rt.start_log()
            # A deploy killed before its head write must not leave the service on the old
            # model.
            await loop.run_in_executor(shared.executor, rt.repair)
        await self.refresh()

    async def stop(self) -> None:
        for rt in self.runtimes.values():
            await rt.close()
        if self.shared.log_executor is not None:
            self.shared.log_executor.shutdown(wait=True)
        if self.shared.limiter is not None:
            await self.shared.limiter.close()
        if self.shared.canary_stats is not None:
            await self.shared.canary_stats.close()
        if self.shared.executor is not None:
            self.shared.executor.shutdown(wait=False)

    async def refresh(self) -> None:
        results = await asyncio.gather(*(rt.refresh() for rt in self.runtimes.values()),
                                       return_exceptions=True)
        for rt, result in zip(self.runtimes.values(), results):
            if isinstance(result, Exception):  # one model's failed poll stops no other
                LOG.error("%s: deployment poll failed", rt.name, exc_info=result)

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_s)
            await self.refresh()

    # -- lookup -------------------------------------------------------------------------------
    @property
    def deployed(self) -> list[str]:
        return [name for name, rt in self.runtimes.items() if rt.deployed]

    def _deployed_phrase(self) -> str:
        names = self.deployed
        return (f"the deployed models are {', '.join(names)}" if names
                else "no model is deployed here yet")

    def lookup(self, name: str) -> ModelRuntime:
        """The deployed model ``name``, else a 404 naming the deployed ones."""
        rt = self.runtimes.get(name)
        if rt is not None and rt.deployed:
            return rt
        if rt is not None:
            why = (f"model {name!r} is not deployed (its deployment history has no stable "
                   f"version yet: run {name}_training_job)")
        else:
            broken = [p for p in self.config.spec_errors if p.path.stem == name]
            why = (f"model {name!r} is not served: {broken[0].message}" if broken
                   else f"no model named {name!r} here")
        raise ServiceError(404, f"{why}; {self._deployed_phrase()}")

    def default(self) -> ModelRuntime:
        """The model POST /predict answers for."""
        if self.config.default_model is None:
            raise ServiceError(404, f"POST /predict has no default model: "
                               f"{self.config.default_problem}; or use "
                               f"POST /v2/models/{{name}}/predict ({self._deployed_phrase()})")
        return self.lookup(self.config.default_model)

    def describe(self) -> dict[str, Any]:
        """``/ready``: every model's state under ``models``.

        The default model's is also at the top, as when the service had one model.
        """
        models = {name: rt.describe() for name, rt in self.runtimes.items()}
        default = models.get(self.config.default_model or "") or {
            "entry": None, "stable": None, "canary": None}
        return {
            **{k: v for k, v in default.items() if k not in ("ready", "deployed")},
            "ready": any(m["ready"] for m in models.values()),
            "model": self.config.default_model,
            "models": models,
            "spec_errors": [{"path": str(p.path), "error": p.message}
                            for p in self.config.spec_errors],
        }
