"""Canary routing and judgement.

A request with an ``X-Routing-Key`` goes to the canary when the key's hash falls in the
canary's share, so one user sees one model; a request without a key is routed at random.
The canary's requests, errors and a latency histogram are counted per model and deployment
entry (in Redis when configured, so every worker's traffic counts); a verdict is reached as
soon as it is certain.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from pipelines.spec import CanarySpec

# Latency histogram bucket upper bounds, in milliseconds.
BUCKETS_MS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 200, 500, 1000, 2000, 5000, float("inf"))


def to_canary(share: float, routing_key: str | None) -> bool:
    if share <= 0:
        return False
    if routing_key is None:
        return random.random() < share
    digest = hashlib.blake2b(routing_key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


@dataclass
class CanaryTotals:
    requests: int
    errors: int
    buckets: list[int]

    def p99_ms(self) -> float:
        """Upper bound of the bucket holding the 99th percentile."""
        need = 0.99 * max(self.requests, 1)
        seen = 0
        for bound, count in zip(BUCKETS_MS, self.buckets):
            seen += count
            if seen >= need:
                return bound
        return float("inf")


def _bucket(latency_ms: float) -> int:
    return next(i for i, b in enumerate(BUCKETS_MS) if latency_ms <= b)


class MemoryCanaryStats:
    """Canary counts of every model, in this process only."""

    def __init__(self) -> None:
        self._totals: dict[tuple[str, int], CanaryTotals] = {}

    async def record(self, model: str, seq: int, ok: bool, latency_ms: float) -> CanaryTotals:
        t = self._totals.setdefault((model, seq), CanaryTotals(0, 0, [0] * len(BUCKETS_MS)))
        t.requests += 1
        t.errors += 0 if ok else 1
        t.buckets[_bucket(latency_ms)] += 1
        return t

    async def close(self) -> None:
        return None


class RedisCanaryStats:
    """The same counts in Redis (``tideline:canary:<model>:<entry>``), shared by workers."""

    def __init__(self, url: str):
        import redis.asyncio as redis

        self.client = redis.from_url(url)

    async def record(self, model: str, seq: int, ok: bool, latency_ms: float) -> CanaryTotals:
        name = f"tideline:canary:{model}:{seq}"
        pipe = self.client.pipeline()
        pipe.hincrby(name, "requests", 1)
        pipe.hincrby(name, "errors", 0 if ok else 1)
        pipe.hincrby(name, f"b{_bucket(latency_ms)}", 1)
        pipe.expire(name, 7 * 24 * 3600)
        pipe.hgetall(name)
        *_, raw = await pipe.execute()
        values = {k.decode(): int(v) for k, v in raw.items()}
        return CanaryTotals(values.get("requests", 0), values.get("errors", 0),
                            [values.get(f"b{i}", 0) for i in range(len(BUCKETS_MS))])

    async def close(self) -> None:
        await self.client.aclose()


def verdict(spec: CanarySpec, totals: CanaryTotals) -> tuple[str | None, str]:
    """``("promote" | "abort" | None, why)``; None while the evidence is not in yet."""
    allowed_errors = spec.max_error_rate * spec.min_requests
    if totals.errors > allowed_errors:
        return "abort", (f"canary errors {totals.errors} in {totals.requests} requests exceed "
                         f"max_error_rate {spec.max_error_rate:g} over min_requests "
                         f"{spec.min_requests}")
    if totals.requests < spec.min_requests:
        return None, f"{totals.requests} of {spec.min_requests} requests seen"
    p99 = totals.p99_ms()
    if p99 > spec.max_p99_latency_ms:
        return "abort", (f"canary p99 latency ≤ {p99:g} ms bucket is over "
                         f"max_p99_latency_ms {spec.max_p99_latency_ms:g}")
    rate = totals.errors / totals.requests
    return "promote", (f"canary within limits over {totals.requests} requests: error rate "
                       f"{rate:.4f}, p99 ≤ {p99:g} ms")
