"""What each path answers: ``/`` the page, ``/metrics`` Prometheus, ``/json`` gdnsdctl stats.

Read-only: no path changes anything. ``tick`` is the status server's
heartbeat: it samples the counters into the rate ring when a sample is due.
"""

from __future__ import annotations

import logging
import time

from pygdnsd.control import json_answers
from pygdnsd.status import metrics, page
from pygdnsd.status.http import HttpError, Request, Response
from pygdnsd.status.rate_ring import RateRing
from pygdnsd.status.snapshot import StatusSource, collect

log = logging.getLogger(__name__)

HTML = "text/html; charset=utf-8"
JSON = "application/json"
# The page loads nothing: inline style, inline SVG, no script.
PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


class Endpoints:
    def __init__(self, source: StatusSource, rates: RateRing) -> None:
        self.source = source
        self.rates = rates

    def answer(self, request: Request) -> Response:
        path = request.path
        if path == "/metrics":
            return Response(200, metrics.CONTENT_TYPE, metrics.render(collect(self.source)))
        if path == "/json":
            body = json_answers.stats_json(self.source.current_stats(), self.source.uptime())
            return Response(200, JSON, body)
        if path == "/":
            snapshot = collect(self.source)
            body = page.render(snapshot, self.rates.rates(snapshot.taken_at))
            return Response(200, HTML, body, (("Content-Security-Policy", PAGE_POLICY),))
        raise HttpError(404, f"nothing at {path}: try /, /metrics or /json")

    def tick(self) -> None:
        """Sample the counters into the rate ring if a sample is due."""
        now = time.time()
        if self.rates.due(now):
            try:
                self.rates.add(now, self.source.current_stats().dns.values)
            except Exception:  # a sample lost is a gap in the chart, not a reason to stop serving
                log.exception("status: sampling the counters failed")
