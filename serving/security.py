"""API keys (stored as sha256 digests, compared in constant time) and rate limits.

One key file serves every model; a key's requests to a model are limited by that model's
``serving.rate_limit_per_minute``.

Keys are long random tokens, so one unsalted sha256 is enough to keep the file useless
to whoever reads it; verification hashes the presented key and compares it with every
stored digest with ``hmac.compare_digest``, so timing says nothing about which matched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """The hashed key file: ``{"keys": [{"name": ..., "sha256": ..., "created": ...}]}``."""

    def __init__(self, path: Path):
        self.path = path
        self._mtime: float | None = None
        self._keys: list[dict[str, Any]] = []

    def _load(self) -> list[dict[str, Any]]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._keys, self._mtime = [], None
            return self._keys
        if mtime != self._mtime:  # picks up keys added while the service runs
            self._keys = json.loads(self.path.read_text()).get("keys", [])
            self._mtime = mtime
        return self._keys

    def verify(self, presented: str | None) -> str | None:
        """The key's name if ``presented`` is a valid key, else None."""
        if not presented:
            return None
        digest = _digest(presented)
        found = None
        for entry in self._load():
            if hmac.compare_digest(digest, entry["sha256"]) and found is None:
                found = entry["name"]
        return found

    def create(self, name: str) -> str:
        """Add a key named ``name``; returns the key itself (shown once, never stored)."""
        key = "tl_" + secrets.token_urlsafe(32)
        keys = [k for k in self._load() if k["name"] != name]
        keys.append({"name": name, "sha256": _digest(key), "created": time.time()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keys": keys}, indent=2))
        tmp.chmod(0o600)
        tmp.replace(self.path)
        return key

    def names(self) -> list[str]:
        return [k["name"] for k in self._load()]


class MemoryRateLimiter:
    """Fixed one-minute windows per key and model, in this process only."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], int] = {}

    async def hit(self, key: str, model: str, per_minute: int) -> tuple[bool, float]:
        """Count one request of ``key`` to ``model``.

        Returns:
            (allowed, seconds until the window resets).
        """
        now = time.time()
        window = int(now // 60)
        if len(self._counts) > 10_000:
            self._counts = {k: v for k, v in self._counts.items() if k[2] >= window}
        count = self._counts.get((key, model, window), 0) + 1
        self._counts[(key, model, window)] = count
        return count <= per_minute, 60 - now % 60

    async def close(self) -> None:
        return None


class RedisRateLimiter:
    """The same windows kept in Redis, so the limit holds across workers and machines."""

    def __init__(self, url: str):
        import redis.asyncio as redis

        self.client = redis.from_url(url)

    async def hit(self, key: str, model: str, per_minute: int) -> tuple[bool, float]:
        now = time.time()
        name = f"tideline:ratelimit:{model}:{_digest(key)[:16]}:{int(now // 60)}"
        pipe = self.client.pipeline()
        pipe.incr(name)
        pipe.expire(name, 120)
        count, _ = await pipe.execute()
        return int(count) <= per_minute, 60 - now % 60

    async def close(self) -> None:
        await self.client.aclose()
