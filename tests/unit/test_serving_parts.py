"""Parts of the serving service, on their own: keys, canary verdicts, log retention, batching."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pipelines.spec import CanarySpec
from serving.batching import MicroBatcher
from serving.canary import BUCKETS_MS, CanaryTotals, MemoryCanaryStats, to_canary, verdict
from serving.predlog import PredictionLog
from serving.security import ApiKeys, MemoryRateLimiter


def test_api_keys_are_stored_hashed_and_verified(tmp_path):
    keys = ApiKeys(tmp_path / "keys.json")
    alice = keys.create("alice")
    bob = keys.create("bob")
    stored = (tmp_path / "keys.json").read_text()
    assert alice not in stored and bob not in stored
    assert json.loads(stored)["keys"][0]["sha256"] and oct((tmp_path / "keys.json").stat(
    ).st_mode)[-3:] == "600"
    assert keys.verify(alice) == "alice" and keys.verify(bob) == "bob"
    assert keys.verify(alice + "x") is None and keys.verify(None) is None
    new_alice = keys.create("alice")  # re-creating a name replaces its key
    assert keys.verify(alice) is None and keys.verify(new_alice) == "alice"


def test_memory_rate_limit_counts_per_key():
    limiter = MemoryRateLimiter(per_minute=3)

    async def hits(key, n):
        return [(await limiter.hit(key))[0] for _ in range(n)]

    assert asyncio.run(hits("a", 5)) == [True, True, True, False, False]
    assert asyncio.run(hits("b", 1)) == [True]


def test_routing_key_is_sticky_and_follows_the_share():
    keys = [f"user-{i}" for i in range(5000)]
    share = sum(to_canary(0.2, k) for k in keys) / len(keys)
    assert 0.17 < share < 0.23
    assert all(to_canary(0.2, k) == to_canary(0.2, k) for k in keys[:100])
    assert not any(to_canary(0.0, k) for k in keys[:100])


def test_canary_verdicts():
    spec = CanarySpec(share=0.5, min_requests=100, max_error_rate=0.02, max_p99_latency_ms=50)
    fast = [0] * len(BUCKETS_MS)
    fast[2] = 50  # 50 requests at ≤ 5 ms
    assert verdict(spec, CanaryTotals(50, 0, fast))[0] is None
    # Three errors already exceed 2% of 100: no need to wait for the rest.
    decision, why = verdict(spec, CanaryTotals(50, 3, fast))
    assert decision == "abort" and "errors 3" in why
    done = [0] * len(BUCKETS_MS)
    done[2] = 100
    assert verdict(spec, CanaryTotals(100, 1, done))[0] == "promote"
    slow = [0] * len(BUCKETS_MS)
    slow[2], slow[9] = 98, 2  # 2% of requests in the 100–200 ms bucket: p99 over 50 ms
    decision, why = verdict(spec, CanaryTotals(100, 0, slow))
    assert decision == "abort" and "latency" in why

    stats = MemoryCanaryStats()
    totals = [asyncio.run(stats.record(7, ok, 3.0)) for ok in (True, False, True)]
    assert (totals[-1].requests, totals[-1].errors) == (3, 1)


def test_prediction_log_keeps_only_the_newest_files(tmp_path):
    log = PredictionLog(tmp_path, flush_rows=10, flush_seconds=1, retention_files=3)
    for i in range(5):
        log._write([{"request_id": f"r{i}", "probability": 0.5, "age": 30.0 + i}])
    files = sorted((tmp_path / "predictions").glob("*/*.parquet"))
    assert len(files) == 3 and log.written == 5
    import pandas as pd

    kept = pd.concat([pd.read_parquet(f) for f in files])
    assert kept["request_id"].tolist() == ["r2", "r3", "r4"]


def test_micro_batcher_merges_concurrent_requests_and_splits_answers():
    calls = []

    def run(feeds):
        calls.append(len(feeds["x"]))
        return feeds["x"][:, 0] * 2

    async def scenario():
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(run, pool, max_batch=64, max_wait_s=0.02)
            outs = await asyncio.gather(*(
                batcher.submit({"x": np.full((n, 1), float(i))}) for i, n in
                enumerate([1, 2, 3, 1])))
            batcher.close()
            return outs

    outs = asyncio.run(scenario())
    assert [o.tolist() for o in outs] == [[0.0], [2.0, 2.0], [4.0, 4.0, 4.0], [6.0]]
    assert calls == [7], "four concurrent requests, one inference call"
