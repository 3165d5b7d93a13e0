"""Start a run from the browser: upload a data file, review the starter config that
`lmforge init` would write (the important keys as form fields built from the config's JSON
schema, the rest as YAML), then launch `lmforge run` on it and follow its progress.

Validation is the pipeline's own (`load_config`), so the form can never accept a config the
CLI would reject, and each problem is shown next to the key it names.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from lmforge.ui import launch as runs
from lmforge.ui.pages import page
from lmforge.ui.session import User, needs

router = APIRouter()

# The keys most runs change, in the order the form shows them; everything else is in the YAML.
FIELDS = (
    "task",
    "data.train",
    "data.text_column",
    "data.label_column",
    "data.instruction_column",
    "data.output_column",
    "model",
    "train.method",
    "train.epochs",
    "train.learning_rate",
    "train.batch_size",
    "train.max_length",
    "split.validation",
    "split.test",
    "tune.enabled",
)
# Column keys that only matter for one task (start.js hides the others).
TASK_OF = {
    "data.text_column": "classification",
    "data.label_column": "classification",
    "data.instruction_column": "generation",
    "data.output_column": "generation",
}


@lru_cache(maxsize=1)
def field_specs() -> tuple[dict[str, Any], ...]:
    """Label, help, input kind, choices and default of each form field, from the schema
    (read-only: cached, the schema does not change while the server runs)."""
    from lmforge.config import Config

    schema = Config.model_json_schema()
    specs = []
    for key in FIELDS:
        node: dict[str, Any] = schema
        for part in key.split("."):
            node = node["properties"][part]
            if "$ref" in node:  # a section: follow it to its own definition
                node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        kind = node.get("type", "string")  # `model` is string-or-list: edited as text
        branches = [b.get("type") for b in node.get("anyOf", []) if "const" not in b]
        if branches in (["number"], ["integer"]):  # a number or `auto`: a text box, parsed
            kind = f"{branches[0]}-or-auto"
        specs.append(
            {
                "key": key,
                "title": node.get("title", key),
                "help": node.get("description", ""),
                "kind": kind,
                "choices": ["true", "false"] if kind == "boolean" else node.get("enum", []),
                "default": node.get("default"),
                "task": TASK_OF.get(key),
            }
        )
    return tuple(specs)


def _get(data: dict[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = data
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value


def _shown(value: Any, default: Any) -> str:
    """How a YAML value appears in a text input (a model list as `a, b`)."""
    value = default if value is None else value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _parsed(raw: str, spec: dict[str, Any]) -> Any:
    """A form string as the YAML value; what cannot be parsed is passed on unchanged so
    that `load_config` reports it against its key (`must be a valid number, got 'x'`)."""
    raw = raw.strip()
    kind = spec["kind"]
    if kind == "boolean":
        return raw == "true"
    try:
        if kind.startswith("integer"):
            return int(raw)
        if kind.startswith("number"):
            return float(raw)
    except ValueError:
        return raw
    if spec["key"] == "model" and "," in raw:
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def merged(text: str, form: dict[str, str]) -> dict[str, Any]:
    """The YAML box with the form fields applied on top. A field is only written when it
    differs from the default or the YAML has it, so the saved config stays short; a blank
    field keeps the YAML's value (or the default)."""
    data = yaml.safe_load(text) if text.strip() else {}
    if not isinstance(data, dict):
        raise ValueError("the YAML must be a mapping of keys (project, task, data, ...)")
    for spec in field_specs():
        if not form.get(spec["key"], "").strip():
            continue
        value = _parsed(form[spec["key"]], spec)
        if value != spec["default"] or _get(data, spec["key"]) is not None:
            _set(data, spec["key"], value)
    return data


def for_project(text: str, request: Request) -> str:
    """The starter YAML pointed at the UI project's tracking store and run folder, so the
    new run shows on these pages and registers in the same registry."""
    config = request.app.state.project.config
    lines = [line for line in text.splitlines() if not line.startswith("tracking:")]
    lines.append(f"tracking: {json.dumps(config.section('tracking'))}   # the UI project's store")
    lines.append(f"output_dir: {json.dumps(config.output_dir)}   # the UI project's run folder")
    return "\n".join(lines) + "\n"


def _form(request: Request, text: str, values: dict[str, str], problems: list[str], **extra: Any) -> Response:
    specs = field_specs()
    errors: dict[str, list[str]] = {}
    general = []
    for problem in problems:
        key, sep, message = problem.partition(": ")
        if sep and key in FIELDS:
            errors.setdefault(key, []).append(message)
        else:
            general.append(problem)
    return page(
        request, "start.html.j2", step="form", yaml_text=text, fields=specs, values=values,
        errors=errors, general=general, **extra,
    )  # fmt: skip


def _values(text: str) -> dict[str, str]:
    data = yaml.safe_load(text) or {}
    return {s["key"]: _shown(_get(data, s["key"]), s["default"]) for s in field_specs()}


@router.get("/start", response_class=HTMLResponse)
async def start(request: Request, user: User = Depends(needs("admin"))) -> Response:
    return page(request, "start.html.j2", step="upload", error=None)


# Upload, wait and progress are plain functions: FastAPI runs them in its thread pool, so
# copying and reading a large file does not hold up the server's other requests.
@router.post("/start/upload", response_class=HTMLResponse)
def upload(request: Request, file: UploadFile = File(...), user: User = Depends(needs("admin"))) -> Response:
    from lmforge.errors import LmforgeError
    from lmforge.starter import guess, render

    config_dir = request.app.state.project.config_file.parent
    try:
        path = runs.save_upload(config_dir, file.filename or "", file.file)
        found = guess(path)
    except (ValueError, LmforgeError) as exc:
        return page(request, "start.html.j2", status_code=400, step="upload", error=str(exc))
    request.app.state.sessions.audit("ui.upload", user, str(path))
    text = for_project(render(path, found, config_dir), request)
    return _form(request, text, _values(text), [], reasons=found.reasons, uploaded=path.name)


@router.post("/start/launch", response_class=HTMLResponse)
async def start_run(request: Request, user: User = Depends(needs("admin"))) -> Response:
    from lmforge.config import load_config
    from lmforge.errors import ConfigError

    project = request.app.state.project
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    text = form.pop("yaml", "")
    try:
        data = merged(text, form)
        config = load_config(data=data)
    except yaml.YAMLError as exc:
        return _form(request, text, form, [f"invalid YAML: {exc}"])
    except ValueError as exc:
        return _form(request, text, form, [str(exc)])
    except ConfigError as exc:
        return _form(request, text, form, exc.problems)
    config_dir: Path = project.config_file.parent
    config._base_dir = config_dir  # relative paths mean what they will mean in the saved file
    problems = []
    if not config.resolve_path(config.data.train).exists():
        problems.append(f"data.train: file not found in {config_dir}")
    if config.resolve_path(config.output_dir).resolve() != project.runs_dir.resolve():
        problems.append(f"output_dir: must be the UI project's run folder ({project.config.output_dir})")
    if problems:
        return _form(request, text, form, problems)
    started = runs.launch(runs.write_config(config_dir, data, user.name))
    _launches(request)[started.name] = started
    request.app.state.sessions.audit("ui.run.launch", user, str(started.config_file))
    return RedirectResponse(f"/start/runs/{started.name}", status_code=303)


@router.get("/start/runs/{name}", response_class=HTMLResponse)
def waiting(request: Request, name: str, user: User = Depends(needs("predict"))) -> Response:
    """Redirects to the run's page once `lmforge run` has created its folder; until then
    a page that reloads itself every second (or the log, when the process failed first)."""
    project = request.app.state.project
    started = runs.find_launch(project.config_file.parent, name, _launches(request))
    if started is None:
        raise HTTPException(404, f"no launch {name}")
    run_id = runs.run_of(project.runs_dir, started.config_file)
    if run_id is not None:
        return RedirectResponse(f"/runs/{run_id}", status_code=303)
    code = started.exited()
    log = started.log_file.read_text(errors="replace")[-8000:] if started.log_file.exists() else ""
    response = page(request, "start.html.j2", step="waiting", name=name, exit_code=code, log=log)
    if code is None:
        response.headers["Refresh"] = "1"
    return response


@router.get("/runs/{run_id}/progress.json")
def run_progress(request: Request, run_id: str, user: User = Depends(needs("predict"))) -> Response:
    for started in _launches(request).values():
        started.exited()  # reap finished `lmforge run` processes, so a dead one reads as dead
    folder = runs.run_folder(request.app.state.project.runs_dir, run_id)
    if folder is None:
        raise HTTPException(404, f"no run {run_id}")
    return JSONResponse(runs.progress(folder), headers={"Cache-Control": "no-store"})


def _launches(request: Request) -> dict[str, runs.Launch]:
    # Kept on the app (not the module) so that two apps in one process (tests) stay apart.
    state = request.app.state
    if not hasattr(state, "launches"):
        state.launches = {}
    launches: dict[str, runs.Launch] = state.launches
    return launches
