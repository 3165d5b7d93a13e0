"""Monitoring: request rates and latency percentiles from the prediction log, feedback
counts, and the latest drift report of each model (written by `lmforge monitor`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from lmforge.ui.pages import page
from lmforge.ui.session import User, needs

router = APIRouter()


def traffic(store: Any, name: str, hours: float = 24) -> dict[str, Any]:
    """Requests per hour and latency percentiles of `name` over the last `hours`."""
    since = time.time() - hours * 3600
    recent = store.recent_predictions(name, since=since)
    if recent.empty:
        return {"predictions": 0, "per_hour": [], "routes": []}
    hours_ago = ((time.time() - recent["ts"]) // 3600).astype(int)
    per_hour = [{"hours_ago": int(h), "count": int(n)} for h, n in sorted(hours_ago.value_counts().items())]
    routes = []
    for route, group in recent.groupby("route"):
        latency = group["latency_ms"].to_numpy()
        routes.append(
            {
                "route": route,
                "count": len(group),
                "p50": float(np.percentile(latency, 50)),
                "p90": float(np.percentile(latency, 90)),
                "p99": float(np.percentile(latency, 99)),
                "mean_confidence": float(group["confidence"].mean())
                if group["confidence"].notna().any()
                else None,
            }
        )
    return {"predictions": len(recent), "per_hour": per_hour, "routes": routes}


@router.get("/monitor", response_class=HTMLResponse)
async def monitor(request: Request, user: User = Depends(needs("predict"))) -> Response:
    from lmforge.serve.store import ServeStore

    project = request.app.state.project
    name = project.config.register_.model_name or project.config.project_name
    store = ServeStore(project.state.feedback_url)
    drift_file: Path = project.state.drift_report(name)
    drift = json.loads(drift_file.read_text()) if drift_file.exists() else None
    feedback = {s: store.count_feedback(s) for s in ("pending", "accepted", "rejected")}
    return page(
        request, "monitor.html.j2", name=name, traffic=traffic(store, name), drift=drift, feedback=feedback
    )
