"""Alerts: a JSON POST to the spec's webhook (``monitoring.alert_webhook``), and the log.

The payload is ``{"source": "tideline", "event": ..., "model": ..., "summary": ...,
"details": {...}, "time": ...}``, which chat tools and incident managers accept through
their generic webhook integrations. Delivery failures are logged, never raised: an
unreachable alert receiver must not fail the run that found the problem.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

LOG = logging.getLogger("tideline.alerts")


def send_alert(webhook: str | None, event: str, model: str, summary: str,
               details: dict[str, Any] | None = None, timeout_s: float = 5.0) -> bool:
    """Log the alert and POST it to ``webhook`` when one is set; returns whether it was sent."""
    payload = {"source": "tideline", "event": event, "model": model, "summary": summary,
               "details": details or {}, "time": time.time()}
    LOG.warning("ALERT %s for %s: %s", event, model, summary)
    if not webhook:
        return False
    request = urllib.request.Request(
        webhook, data=json.dumps(payload, default=str).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError) as exc:
        LOG.error("alert %s could not be delivered to %s: %s", event, webhook, exc)
        return False
