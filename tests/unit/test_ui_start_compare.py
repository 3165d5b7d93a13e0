"""The UI's start-a-run flow (upload -> starter config form -> validated launch -> live
progress) and the run comparison page, on a tiny model and tiny data."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from lmforge.config import load_config
from lmforge.ui import views_compare, views_start
from lmforge.ui.app import create_ui_app, project_for
from tests.conftest import make_rows
from tests.ui_support import logged_in, ui_project

RUN_TIMEOUT = 180  # seconds for a whole `lmforge run` of the tiny model in a subprocess


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Any]:
    """A project with two finished runs that differ in train.seed (42, 3), one key per scope."""
    project = ui_project(tmp_path_factory.mktemp("ui-start"), tiny_model)
    return {**project, "runs": tuple(run.run_id for run in project["runs"])}


def _client(project: dict[str, Any], who: str | None) -> TestClient:
    return logged_in(create_ui_app(project_for(project["path"])), who and project["keys"][who])


def _upload(
    client: TestClient, name: str = "tickets.csv", header: tuple[str, str] = ("message", "topic")
) -> str:
    content = "\n".join([",".join(header), *(f"{t},{label}" for t, label in make_rows())]) + "\n"
    response = client.post("/start/upload", files={"file": (name, content.encode(), "text/csv")})
    assert response.status_code == 200, response.text
    return response.text


def _yaml_box(page: str) -> str:
    found = re.search(r'<textarea class="yaml" name="yaml"[^>]*>(.*?)</textarea>', page, re.S)
    assert found, page
    return html.unescape(found.group(1))


def _field(page: str, key: str) -> str:
    """The HTML of one form field (label, input, its errors)."""
    found = re.search(
        rf'<div class="field[^"]*" data-key="{re.escape(key)}".*?(?=<div class="field|</div>\s*<h2>)',
        page,
        re.S,
    )
    assert found, key
    return found.group(0)


def _form(page: str, **fields: str) -> dict[str, str]:
    """What the browser would submit: every field's current value, some changed, and the YAML."""
    values = {key: html.unescape(v) for key, v in re.findall(r'name="([\w.]+)" value="([^"]*)"', page)}
    values.update(
        re.findall(r'<select id="f-[\w.]+" name="([\w.]+)">.*?<option value="([^"]*)" selected', page, re.S)
    )
    values.update({k.replace("__", "."): v for k, v in fields.items()})
    values["yaml"] = _yaml_box(page)
    return values


@pytest.mark.parametrize("path", ["/start"])
def test_starting_a_run_needs_admin(project: dict[str, Any], path: str) -> None:
    assert _client(project, None).get(path, follow_redirects=False).status_code == 303
    predict = _client(project, "predict")
    assert predict.get(path).status_code == 403
    upload = predict.post("/start/upload", files={"file": ("x.csv", b"text,label\na,b\n", "text/csv")})
    assert upload.status_code == 403
    assert predict.post("/start/launch", data={"yaml": "task: classification"}).status_code == 403
    assert not list(project["folder"].glob("uploads/*/x.csv"))
    assert _client(project, "admin").get(path).status_code == 200


def test_an_upload_shows_the_starter_config_with_guessed_columns(project: dict[str, Any]) -> None:
    page = _upload(_client(project, "admin"))
    assert 'name="data.text_column" value="message"' in page
    assert 'name="data.label_column" value="topic"' in page
    assert "label column &#39;topic&#39;: its name" in page  # the reason for the guess
    starter = yaml.safe_load(_yaml_box(page))
    assert re.fullmatch(r"uploads/\d{8}-\d{6}(-\d+)?/tickets\.csv", starter["data"]["train"])
    assert starter["project"] == "tickets"  # named after the file, as `lmforge init` names it
    # Pointed at the project's run folder and tracking store, so the run shows up in this UI.
    assert starter["output_dir"] == str(project["folder"] / "runs")
    assert starter["tracking"]["uri"] == f"sqlite:///{project['folder']}/mlruns.db"
    assert 'data-key="train.method"' in page and '<option value="full" selected' in page  # an enum


@pytest.mark.parametrize(
    "name", ["../../evil.csv", "..\\..\\evil.csv", "/etc/evil.csv", "a/../../../evil.csv"]
)
def test_an_upload_name_cannot_leave_the_uploads_folder(project: dict[str, Any], name: str) -> None:
    client = _client(project, "admin")
    _upload(client, name=name)
    uploads = project["folder"] / "uploads"
    saved = sorted(uploads.glob("*/evil.csv"))
    assert saved and all(p.resolve().parent.parent == uploads.resolve() for p in saved)
    assert not any(p.exists() for p in (project["folder"].parent / "evil.csv", Path("/etc/evil.csv")))
    refused = client.post("/start/upload", files={"file": ("../run.sh", b"echo", "text/plain")})
    assert refused.status_code == 400 and "is not a data file" in refused.text


def test_a_bad_value_is_shown_next_to_its_key(project: dict[str, Any]) -> None:
    client = _client(project, "admin")
    page = _upload(client)
    form = _form(page, train__learning_rate="-1")
    form["yaml"] += "trian: {epochs: 1}\n"  # a key not in the form: reported above the YAML box
    response = client.post("/start/launch", data=form, follow_redirects=False)
    assert response.status_code == 200
    field = _field(response.text, "train.learning_rate")
    assert "must be &gt; 0" in field and 'value="-1"' in field
    assert "must be" not in _field(response.text, "train.epochs")
    assert re.search(
        r'class="msg error general">trian: unknown key; did you mean &#39;train&#39;', response.text
    )
    assert not list(project["folder"].glob("ui-*.yaml"))  # nothing written, nothing started


def test_a_good_config_launches_a_run_that_finishes(project: dict[str, Any], tiny_model: Path) -> None:
    client = _client(project, "admin")
    page = _upload(client)
    form = _form(
        page, model=str(tiny_model), train__epochs="3", train__max_length="16", train__batch_size="8",
        train__learning_rate="0.005", split__validation="0.2", split__test="0.2",
    )  # fmt: skip
    response = client.post("/start/launch", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
    waiting = response.headers["location"]
    assert re.fullmatch(r"/start/runs/ui-\d{8}-\d{6}(-\d+)?", waiting)
    saved = load_config(project["folder"] / f"{waiting.rsplit('/', 1)[-1]}.yaml")
    assert saved.model == str(tiny_model) and saved.train.max_length == 16

    deadline = time.time() + RUN_TIMEOUT
    while (response := client.get(waiting, follow_redirects=False)).status_code == 200:
        assert "exit code" not in response.text, response.text  # the process died early
        assert time.time() < deadline, "the run folder never appeared"
        time.sleep(0.5)
    assert response.status_code == 303
    run_id = response.headers["location"].removeprefix("/runs/")
    while (progress := client.get(f"/runs/{run_id}/progress.json").json())["status"] == "running":
        assert time.time() < deadline, progress
        time.sleep(2)
    assert progress["status"] == "succeeded", progress
    assert progress["done"] == progress["total"] and progress["current"] is None
    assert {s["status"] for s in progress["stages"]} <= {"done", "cached"}
    assert "accuracy" in progress["metrics"]
    assert client.get(f"/runs/{run_id}").status_code == 200


def test_progress_reports_stages_and_refuses_odd_ids(project: dict[str, Any]) -> None:
    client = _client(project, "predict")
    first = project["runs"][0]
    progress = client.get(f"/runs/{first}/progress.json").json()
    assert progress["run_id"] == first and progress["status"] == "succeeded"
    assert [s["name"] for s in progress["stages"]][:2] == ["ingest", "validate"]
    assert all(isinstance(s["seconds"], float) for s in progress["stages"])
    for bad in ("nope", "..", ".work", "%2e%2e"):
        assert client.get(f"/runs/{bad}/progress.json").status_code == 404
    assert (
        _client(project, None).get(f"/runs/{first}/progress.json", follow_redirects=False).status_code == 303
    )


def test_compare_shows_changed_keys_and_both_runs_metrics(project: dict[str, Any]) -> None:
    client = _client(project, "predict")
    a, b = project["runs"]
    page = client.get(f"/compare?a={a}&b={b}").text
    changed = page.split('<table id="changed">')[1].split("</table>")[0]
    assert re.search(r'<td class="key">train\.seed</td><td>42</td><td>3</td>', changed)
    assert "data.train" not in changed  # unchanged keys are in the collapsed table
    assert '<td class="key">data.text_column</td>' in page.split('<table class="same"')[1]
    metrics = page.split('<table id="metrics">')[1].split("</table>")[0]
    row = re.search(r'<td class="key">accuracy</td>(.*?)</tr>', metrics, re.S)
    assert row and len(re.findall(r"\d\.\d{4}", row.group(1))) == 3  # A, B and B - A
    picker = client.get("/compare").text  # no runs chosen: the form, the two newest preselected
    assert picker.count('" selected>') == 2 and '<table id="changed">' not in picker
    assert client.get(f"/compare?a={a}&b=../etc").status_code == 404


def test_form_helpers_build_fields_from_the_schema() -> None:
    specs = {s["key"]: s for s in views_start.field_specs()}
    assert specs["train.method"]["choices"] == ["full", "lora", "freeze"]
    assert specs["tune.enabled"]["kind"] == "boolean" and specs["tune.enabled"]["default"] is False
    assert specs["train.learning_rate"]["help"].startswith("Peak learning rate")
    data = views_start.merged(
        "task: classification\ndata: {train: a.csv}\n",
        {
            "train.epochs": "2",
            "train.batch_size": "32",
            "tune.enabled": "true",
            "model": "a, b",
            "data.output_column": "",
        },
    )
    # Only values that differ from the default (or are in the YAML) are written.
    assert data == {
        "task": "classification",
        "data": {"train": "a.csv"},
        "train": {"epochs": 2.0},
        "tune": {"enabled": True},
        "model": ["a", "b"],
    }
    assert views_compare.flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {
        "a.b": "1",
        "a.c": "[1, 2]",
        "d": "null",
    }
