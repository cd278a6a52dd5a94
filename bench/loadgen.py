"""A small open-loop HTTP/1.1 load generator on raw asyncio streams.

httpx costs ~4 ms of client CPU per request here, so with it the client, not the
service, would set the ceiling. This sends pre-encoded requests over keep-alive
connections and reads each response by its Content-Length: tens of microseconds a
request. Each request is sent at its scheduled time on a free connection (a new one is
opened when all are busy); latency runs from the scheduled time to the last byte.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass


@dataclass
class LoadResult:
    throughput: float
    errors: int
    p50: float
    p99: float
    statuses: dict[int, int]


def encode(host: str, port: int, path: str, body: dict, headers: dict[str, str]) -> bytes:
    payload = json.dumps(body).encode()
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
            f"Content-Length: {len(payload)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def run(host: str, port: int, requests: list[bytes], rate: float,
              warmup: int = 50) -> LoadResult:
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def conn():
        return idle.pop() if idle else await asyncio.open_connection(host, port)

    async def send(request: bytes, due: float | None) -> None:
        if due is not None:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        pair = await conn()
        try:
            status = await _exchange(*pair, request)
        except (OSError, asyncio.IncompleteReadError):
            statuses[0] = statuses.get(0, 0) + 1
            return
        idle.append(pair)
        statuses[status] = statuses.get(status, 0) + 1
        if due is not None and status == 200:
            latencies.append(time.perf_counter() - due)

    await asyncio.gather(*(send(requests[i % len(requests)], None) for i in range(warmup)))
    statuses.clear()
    start = time.perf_counter()
    await asyncio.gather(*(send(r, start + i / rate) for i, r in enumerate(requests)))
    elapsed = time.perf_counter() - start
    for _, writer in idle:
        writer.close()
    latencies.sort()
    n = len(latencies)
    return LoadResult(throughput=n / elapsed,
                      errors=sum(c for s, c in statuses.items() if s != 200),
                      p50=latencies[n // 2] * 1e3 if n else float("nan"),
                      p99=latencies[min(n - 1, int(n * 0.99))] * 1e3 if n else float("nan"),
                      statuses=statuses)
