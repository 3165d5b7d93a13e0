"""Compare two runs: what changed in their resolved configs and how their metrics moved.

Each run folder holds `config.yaml` with every default written out, so a flat key-by-key
diff shows exactly what differed between the runs, defaults included; the metrics come from
`run.json`, which is what the runs table shows too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from lmforge.pipeline.runs import read_run
from lmforge.ui.launch import run_folder
from lmforge.ui.pages import page
from lmforge.ui.session import User, needs

router = APIRouter()
MISSING = "—"  # a key only one of the runs has (another task, another lmforge version)


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested mappings as `section.key` -> value written as one line of YAML/JSON.

    Lists stay whole values: `pii_types` or a model list reads better as one cell than as
    numbered keys, and a change to them is one changed row.
    """
    if isinstance(data, dict) and data:
        rows: dict[str, str] = {}
        for key, value in data.items():
            rows.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return rows
    return {prefix: _cell(data)}


def _cell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def config_rows(a: Path, b: Path) -> list[dict[str, Any]]:
    """One row per key of either config, in the first config's order (new keys last)."""
    left, right = (flatten(_yaml(folder / "config.yaml")) for folder in (a, b))
    keys = list(left) + [k for k in right if k not in left]
    return [
        {
            "key": k,
            "a": left.get(k, MISSING),
            "b": right.get(k, MISSING),
            "changed": left.get(k) != right.get(k),
        }
        for k in keys
    ]


def metric_rows(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Numeric metrics of both runs with b - a; a metric only one run has gets no difference."""
    left, right = (
        {
            k: v
            for k, v in run.get("metrics", {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        for run in (a, b)
    )
    rows = []
    for key in list(left) + [k for k in right if k not in left]:
        va, vb = left.get(key), right.get(key)
        diff = vb - va if va is not None and vb is not None else None
        rows.append({"key": key, "a": va, "b": vb, "diff": diff})
    return rows


def _yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


def _run(runs_dir: Path, run_id: str) -> tuple[Path, dict[str, Any]]:
    folder = run_folder(runs_dir, run_id)
    if folder is None:
        raise HTTPException(404, f"no run {run_id}")
    return folder, read_run(folder)  # a killed run says `killed`, as in the pickers


def _choices(runs_dir: Path) -> list[dict[str, Any]]:
    """Every run for the two pickers, newest first, labelled with its status and start time."""
    from lmforge.pipeline.runs import list_runs

    return [
        {
            "id": run["run_id"],
            "label": f"{run['run_id']} · {run['status']} · "
            + time.strftime("%Y-%m-%d %H:%M", time.localtime(run.get("started_at", 0))),
        }
        for run in (list_runs(runs_dir) if runs_dir.exists() else [])
    ]


@router.get("/compare", response_class=HTMLResponse)
async def compare(
    request: Request, a: str | None = None, b: str | None = None, user: User = Depends(needs("predict"))
) -> Response:
    runs_dir: Path = request.app.state.project.runs_dir
    choices = _choices(runs_dir)
    if not (a and b):
        # Preselect the two newest runs: "what did my last change do" is the usual question.
        ids = [c["id"] for c in choices]
        return page(
            request, "compare.html.j2", choices=choices, a=a or (ids[1] if len(ids) > 1 else None),
            b=b or (ids[0] if ids else None), compared=False,
        )  # fmt: skip
    (folder_a, run_a), (folder_b, run_b) = _run(runs_dir, a), _run(runs_dir, b)
    rows = config_rows(folder_a, folder_b)
    return page(
        request,
        "compare.html.j2",
        choices=choices,
        a=a,
        b=b,
        compared=True,
        runs=(run_a, run_b),
        changed=[r for r in rows if r["changed"]],
        same=[r for r in rows if not r["changed"]],
        metrics=metric_rows(run_a, run_b),
    )
