"""Runs: the list, one run's page (stage timeline with cache hits, metrics, data issues,
HPO trials, log) and its HTML report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from lmforge.pipeline.runs import read_run
from lmforge.ui.pages import page
from lmforge.ui.session import User, needs

router = APIRouter()
HEADLINE = ("accuracy", "f1_macro", "rouge_l", "perplexity")


def _run_dir(request: Request, run_id: str) -> Path:
    runs: Path = request.app.state.project.runs_dir
    folder = runs / run_id
    # The id comes from the URL: it must name a run folder directly under runs/.
    if "/" in run_id or ".." in run_id or not (folder / "run.json").exists():
        raise HTTPException(404, f"no run {run_id}")
    return folder


def run_rows(runs_dir: Path) -> list[dict[str, Any]]:
    """What the runs table shows, newest first."""
    from lmforge.pipeline.runs import list_runs

    rows = []
    for run in list_runs(runs_dir) if runs_dir.exists() else []:
        stages = run.get("stages", {})
        ended = run.get("finished_at") or time.time()
        rows.append(
            {
                "id": run["run_id"],
                "status": run["status"],
                "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(run.get("started_at", 0))),
                "seconds": ended - run.get("started_at", ended),
                "done": sum(1 for s in stages.values() if s.get("status") in ("done", "cached")),
                "cached": sum(1 for s in stages.values() if s.get("status") == "cached"),
                "total": len(stages),
                "running": next((n for n, s in stages.items() if s.get("status") == "running"), None),
                "metrics": {k: v for k, v in run.get("metrics", {}).items() if k in HEADLINE},
                "version": run.get("metrics", {}).get("model_version"),
                "error": run.get("error"),
            }
        )
    return rows


@router.get("/runs", response_class=HTMLResponse)
async def runs(request: Request, user: User = Depends(needs("predict"))) -> Response:
    return page(request, "runs.html.j2", runs=run_rows(request.app.state.project.runs_dir))


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(request: Request, run_id: str, user: User = Depends(needs("predict"))) -> Response:
    folder = _run_dir(request, run_id)
    run = read_run(folder)  # a killed run says `killed`, as on the runs page
    return page(
        request,
        "run.html.j2",
        run=run,
        stages=[{"name": n, **s} for n, s in run.get("stages", {}).items()],
        metrics={k: v for k, v in run.get("metrics", {}).items() if isinstance(v, (int, float))},
        data=_data_issues(folder),
        trials=_trials(folder),
        hpo_plots=sorted(p.name for p in (folder / "tune").glob("hpo_*.png")),
        has_report=(folder / "report" / "report.html").exists(),
        log=_tail(folder / "run.log", 200),
    )


@router.get("/runs/{run_id}/report")
async def report(request: Request, run_id: str, user: User = Depends(needs("predict"))) -> Response:
    path = _run_dir(request, run_id) / "report" / "report.html"
    if not path.exists():
        raise HTTPException(404, f"run {run_id} has no report yet")
    return FileResponse(path, media_type="text/html")


@router.get("/runs/{run_id}/tune/{name}")
async def tune_plot(
    request: Request, run_id: str, name: str, user: User = Depends(needs("predict"))
) -> Response:
    """The search's plots (history, importances, curves, steps): PNGs of the tune stage only."""
    path = _run_dir(request, run_id) / "tune" / name
    if not (name.startswith("hpo_") and name.endswith(".png") and "/" not in name and path.is_file()):
        raise HTTPException(404, f"no plot {name}")
    return FileResponse(path, media_type="image/png")


def _manifest(folder: Path, stage: str) -> dict[str, Any]:
    path = folder / stage / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _data_issues(folder: Path) -> dict[str, Any]:
    """Rejected rows, removed rows by reason, PII masked, label-noise candidates, review queue."""
    validate, clean, label = (_manifest(folder, s) for s in ("validate", "clean", "label"))
    issues: dict[str, Any] = {
        "rejected": validate.get("summary", {}).get("rejected_reasons", {}),
        "removed": clean.get("summary", {}).get("removed_by_reason", {}),
        "pii": {
            k.removeprefix("pii:"): v
            for k, v in clean.get("summary", {}).get("repairs", {}).items()
            if k.startswith("pii:")
        },
        "label_issues": clean.get("rows", {}).get("label_issues", 0),
        "queued": label.get("summary", {}).get("queue_reasons", {}),
        "removed_examples": clean.get("summary", {}).get("removed_examples", [])[:10],
    }
    noise = folder / "clean" / "label_issues.csv"
    issues["noise_examples"] = pd.read_csv(noise).head(10).to_dict("records") if noise.exists() else []
    return issues


def _trials(folder: Path) -> list[dict[str, Any]]:
    path = folder / "tune" / "trials.csv"
    if not path.exists():
        return []
    table = pd.read_csv(path)
    keep = [c for c in ("number", "state", "value", "steps") if c in table] + [
        c for c in table if c.startswith("param_")
    ]
    return table[keep].round(5).to_dict("records")


def _tail(path: Path, lines: int) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
