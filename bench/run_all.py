"""Run every benchmark and print its ratio (``make bench``)."""

from __future__ import annotations

import importlib
import sys

BENCHES = ["bench.import_time", "bench.many_models", "bench.hash_frame", "bench.noop_rerun",
           "bench.noop_data_size", "bench.chain_overhead", "bench.tuning",
           "bench.serving_inference", "bench.serving_http", "bench.rollback", "bench.drift",
           "bench.models", "bench.tracing_overhead"]


def main() -> int:
    for name in sys.argv[1:] or BENCHES:
        print(f"== {name}", flush=True)
        importlib.import_module(name).main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
