"""Prometheus metrics of one server, in their own registry (several apps may live in one
process, e.g. in tests, without clashing on the global registry), and the ASGI middleware
that counts requests into them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lmforge_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lmforge_request_latency_seconds",
            "Request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "lmforge_batch_size", "Texts per model call", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.queue_depth = Gauge("lmforge_queue_depth", "Texts waiting for the model", registry=self.registry)
        self.model_version = Gauge(
            "lmforge_model_version",
            "The version being served (value 1)",
            ["name", "version", "runtime"],
            registry=self.registry,
        )
        self.predictions = Counter(
            "lmforge_predictions", "Texts scored, by predicted label", ["label"], registry=self.registry
        )
        self.drift = Gauge(
            "lmforge_drift",
            "Latest drift measure from `lmforge monitor`, by metric",
            ["metric"],
            registry=self.registry,
        )
        self.drift_alerts = Gauge(
            "lmforge_drift_alerts", "Alerts in the latest drift report", registry=self.registry
        )

    def set_model(self, name: str, version: str, runtime: str) -> None:
        self.model_version.clear()
        self.model_version.labels(name, version, runtime).set(1)

    def load_drift(self, path: Path) -> None:
        """Drift gauges from the JSON report `lmforge monitor` writes (absent: left unset)."""
        if not path.exists():
            return
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            return  # being rewritten; the next scrape reads it
        for metric, value in (report.get("metrics") or {}).items():
            if isinstance(value, (int, float)):
                self.drift.labels(metric).set(float(value))
        self.drift_alerts.set(len(report.get("alerts") or []))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ObserveRequests:
    """Request counts and latency by route template and status. A plain ASGI middleware:
    Starlette's `@app.middleware("http")` wraps every response in a stream and costs
    several ms per request under load.

    Args:
        app: The ASGI app it wraps.
        metrics: Where to count.
        batcher: Anything with `queued_texts` (the micro-batcher), sampled after each request.
    """

    def __init__(self, app: Any, metrics: ServeMetrics, batcher: Any) -> None:
        self.app, self.metrics, self.batcher = app, metrics, batcher

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(path, str(status[0])).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)
            self.metrics.queue_depth.set(self.batcher.queued_texts)
