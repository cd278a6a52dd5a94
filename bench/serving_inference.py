"""Inference layer: micro-batched ONNX Runtime calls vs one call per request, and int8 vs fp32.

(a) The same stream of single-record requests (real UCI Adult rows) is answered either
with one ``session.run`` per request or with one per micro-batch of up to ``max_batch``
requests (concatenate the requests' feeds, run once, split the output), interleaved.
Target: batched ≥ 3× faster.

(c) Size of the int8 and fp32 ONNX files, and latency at batch 1 and 256 (medians of
interleaved calls).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from bench.serving_common import adult_records, deployed_home, stable_entry

REQUESTS = 2048


def main() -> None:
    from pipelines.store import ArtifactStore
    from serving.models import load_model

    home = deployed_home()
    entry = stable_entry(home)
    model = load_model(ArtifactStore(home / "store"), entry, {"fp32", "int8"})
    records = adult_records(REQUESTS)
    requests = [model.feeds([r]) for r in records]

    def per_request(variant: str) -> np.ndarray:
        return np.concatenate([model.run(variant, f) for f in requests])

    def batched(variant: str, max_batch: int) -> np.ndarray:
        out = []
        for i in range(0, len(requests), max_batch):
            group = requests[i:i + max_batch]
            feeds = {k: np.concatenate([g[k] for g in group]) for k in group[0]}
            p = model.run(variant, feeds)
            out.extend(p[j:j + 1] for j in range(len(group)))  # each request's slice
        return np.concatenate(out)

    np.testing.assert_allclose(batched("int8", 64), per_request("int8"), atol=1e-6)
    print(f"(a) {REQUESTS} single-record requests, Adult v{entry.version}, 1 thread")
    for variant in ("int8", "fp32"):
        for max_batch in (8, 32, 64):
            a, b = [], []
            for _ in range(5):
                start = time.perf_counter()
                per_request(variant)
                a.append(time.perf_counter() - start)
                start = time.perf_counter()
                batched(variant, max_batch)
                b.append(time.perf_counter() - start)
            ratio = statistics.median(a) / statistics.median(b)
            print(f"    {variant} max_batch {max_batch:>3}: one call per request "
                  f"{statistics.median(a) * 1e3:7.1f} ms ÷ one call per micro-batch "
                  f"{statistics.median(b) * 1e3:6.1f} ms = {ratio:5.1f}× "
                  f"(target ≥ 3; {'meets' if ratio >= 3 else 'MISSES'})", flush=True)

    print("(c) variants: size and latency (median of interleaved calls)")
    sizes = {v: entry.variants[v].bytes for v in ("fp32", "int8")}
    print(f"    size: fp32 {sizes['fp32']:,} B, int8 {sizes['int8']:,} B "
          f"(int8 ÷ fp32 = {sizes['int8'] / sizes['fp32']:.2f})")
    for batch in (1, 256):
        feeds = model.feeds(records[:batch])
        times = {"fp32": [], "int8": []}
        for _ in range(300 if batch == 1 else 60):
            for variant in ("fp32", "int8"):
                start = time.perf_counter()
                model.run(variant, feeds)
                times[variant].append(time.perf_counter() - start)
        med = {v: statistics.median(t) * 1e6 for v, t in times.items()}
        print(f"    batch {batch:>3}: fp32 {med['fp32']:8.1f} µs, int8 {med['int8']:8.1f} µs "
              f"(int8 ÷ fp32 = {med['int8'] / med['fp32']:.2f})", flush=True)


if __name__ == "__main__":
    main()
