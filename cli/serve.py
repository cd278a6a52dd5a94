"""Start the serving service on the local deployment (``make serve``).

Usage: ``python -m cli.serve [--host 127.0.0.1] [--port 8000] [--workers 1]``.
One process serves every deployed model of the datasets folder (``TIDELINE_DATASETS``, or
``TIDELINE_SPEC`` alone): ``POST /predict`` for the default model
(``TIDELINE_DEFAULT_MODEL``, else the only model, else ``demo``) and the Open Inference
Protocol v2 routes (``/v2/models/{name}/infer``, ...) for any of them. Settings come from
the environment (``serving/config.py``); with more than one worker, set
``TIDELINE_REDIS_URL`` so rate limits and canary counts are shared.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.serve")
    parser.add_argument("--host", default=os.environ.get("TIDELINE_SERVE_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("TIDELINE_SERVE_PORT",
                                                                       "8000")))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    if args.workers > 1:
        if not os.environ.get("TIDELINE_REDIS_URL"):
            print("warning: several workers without TIDELINE_REDIS_URL: each keeps its own "
                  "rate-limit and canary counts", file=sys.stderr)
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR",
                              tempfile.mkdtemp(prefix="tideline-metrics-"))
    import uvicorn

    uvicorn.run("serving.app:create_app", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level=args.log_level, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
