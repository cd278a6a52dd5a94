"""Alerts: a JSON POST to the spec's webhook (``monitoring.alert_webhook``), and the log.

The payload is ``{"source": "tideline", "event": ..., "model": ..., "summary": ...,
"details": {...}, "time": ...}``, which chat tools and incident managers accept through
their generic webhook integrations. Delivery is retried with exponential backoff
(tenacity) on connection errors and 5xx answers, inside a total budget of a few seconds
so a sensor tick is never held up for long. Failures are logged, never raised: an
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


class _RetryableAnswer(OSError):
    """The receiver answered with a server error (5xx or 429): worth another try."""


def send_alert(webhook: str | None, event: str, model: str, summary: str,
               details: dict[str, Any] | None = None, timeout_s: float = 5.0,
               budget_s: float = 5.0) -> bool:
    """Log the alert and POST it to ``webhook`` when one is set; returns whether it was sent.

    Args:
        webhook: The receiver's URL (``None``: log only).
        event: What happened (``drift``, ``gate_blocked``, ...).
        model: The model (spec) name.
        summary: One line for people.
        details: Anything structured the receiver may use.
        timeout_s: The most one attempt may take.
        budget_s: The most all attempts together may take (retries stop then).
    """
    from tenacity import (
        RetryError,
        Retrying,
        retry_if_exception_type,
        stop_after_attempt,
        stop_after_delay,
        wait_exponential,
    )

    payload = {"source": "tideline", "event": event, "model": model, "summary": summary,
               "details": details or {}, "time": time.time()}
    LOG.warning("ALERT %s for %s: %s", event, model, summary)
    if not webhook:
        return False
    body = json.dumps(payload, default=str).encode()
    deadline = time.monotonic() + budget_s

    def attempt() -> bool:
        request = urllib.request.Request(webhook, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        remaining = max(0.1, min(timeout_s, deadline - time.monotonic()))
        try:
            with urllib.request.urlopen(request, timeout=remaining) as response:
                return 200 <= response.status < 300
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code == 429:
                raise _RetryableAnswer(f"HTTP {exc.code}") from exc
            LOG.error("alert %s refused by %s: HTTP %s", event, webhook, exc.code)
            return False

    retrying = Retrying(
        retry=retry_if_exception_type((urllib.error.URLError, OSError)),
        stop=stop_after_delay(budget_s) | stop_after_attempt(5),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        before_sleep=lambda state: LOG.info(
            "alert %s: attempt %d to %s failed (%s); retrying", event, state.attempt_number,
            webhook, state.outcome.exception() if state.outcome else "?"),
    )
    try:
        return bool(retrying(attempt))
    except RetryError as exc:
        cause = exc.last_attempt.exception()
        LOG.error("alert %s could not be delivered to %s after %d attempts: %s", event,
                  webhook, exc.last_attempt.attempt_number, cause)
        return False
