"""Container health check: the serving service's /health, or the Dagster gRPC server."""

import os
import subprocess
import sys
import urllib.request

if os.environ.get("TIDELINE_ROLE") == "serving":
    port = os.environ.get("TIDELINE_SERVE_PORT", "8000")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=4) as response:
            sys.exit(0 if response.status == 200 else 1)
    except OSError:
        sys.exit(1)
sys.exit(subprocess.call(["dagster", "api", "grpc-health-check", "-p", "3030"],
                         stdout=subprocess.DEVNULL))
