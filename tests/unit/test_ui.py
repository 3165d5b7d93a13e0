"""The UI's permission checks and pages on a tiny finished run: who may see and do what."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from lmforge.config import load_config
from lmforge.pipeline.runner import run_pipeline
from lmforge.serve.keys import KeyStore
from lmforge.ui.app import create_ui_app, project_for
from tests.ui_support import log_in, logged_in, page_token, ui_project

NAME = "test-project"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Any]:
    project = ui_project(tmp_path_factory.mktemp("ui"), tiny_model)
    return {**project, "run_id": project["runs"][0].run_id}


def _client(project: dict[str, Any], who: str | None) -> TestClient:
    return logged_in(create_ui_app(project_for(project["path"])), who and project["keys"][who])


READ = ["/runs", "/runs/{run}", "/runs/{run}/report", "/models", "/monitor"]
ACT = [f"/models/{NAME}/versions/1/promote", f"/models/{NAME}/versions/2/archive", f"/models/{NAME}/rollback"]


@pytest.mark.parametrize("path", READ)
@pytest.mark.parametrize(
    ("who", "expected"), [(None, 303), ("predict", 200), ("feedback", 200), ("admin", 200)]
)
def test_read_only_pages_need_a_login(
    project: dict[str, Any], path: str, who: str | None, expected: int
) -> None:
    client = _client(project, who)
    response = client.get(path.format(run=project["run_id"]), follow_redirects=False)
    assert response.status_code == expected, response.text
    if expected == 303:
        assert response.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize("path", ACT)
@pytest.mark.parametrize("who", [None, "predict", "feedback"])
def test_actions_need_admin(project: dict[str, Any], path: str, who: str | None) -> None:
    response = _client(project, who).post(path, follow_redirects=False)
    assert response.status_code == (303 if who is None else 403)
    if who:
        assert "needs a key with scope &#39;admin&#39;" in response.text


def test_a_wrong_or_revoked_key_cannot_log_in(project: dict[str, Any]) -> None:
    client = TestClient(create_ui_app(project_for(project["path"])))
    for secret in ("lmf_not_a_key", project["keys"]["revoked"]):
        response = log_in(client, secret)
        assert response.status_code == 401 and "Unknown or revoked key" in response.text
    assert client.get("/runs", follow_redirects=False).status_code == 303


def test_login_cookie_is_http_only_and_next_stays_on_site(project: dict[str, Any]) -> None:
    client = TestClient(create_ui_app(project_for(project["path"])))
    response = log_in(client, project["keys"]["predict"], next="//evil.example/x")
    assert response.headers["location"] == "/runs"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert (
        project["keys"]["predict"] not in response.headers["set-cookie"]
    )  # the key never reaches the browser
    client.post("/logout", data={"csrf_token": page_token(client.get("/runs").text)})
    assert client.get("/runs", follow_redirects=False).status_code == 303


def test_pages_show_the_runs_the_registry_and_the_report(project: dict[str, Any]) -> None:
    client = _client(project, "predict")
    runs = client.get("/runs").text
    assert project["run_id"] in runs and "succeeded" in runs
    run = client.get(f"/runs/{project['run_id']}").text
    for part in ("Stages", "export", "Data issues", "Open the HTML report", "run_start"):
        assert part in run
    assert "Quality gate" in client.get(f"/runs/{project['run_id']}/report").text
    models = client.get("/models").text
    assert "champion" in models and "Promote" not in models  # no action buttons for read-only users
    assert client.get("/runs/..%2F..%2Fetc").status_code == 404


def test_admin_promotes_and_rolls_back_and_it_is_audited(project: dict[str, Any]) -> None:
    client = _client(project, "admin")
    assert "Promote" in client.get("/models").text
    promoted = client.post(f"/models/{NAME}/versions/1/promote")
    assert "test-project version 1 is the champion" in promoted.text
    rolled = client.post(f"/models/{NAME}/rollback")
    assert "test-project version 2 is the champion again" in rolled.text
    refused = client.post(f"/models/{NAME}/versions/2/archive")
    assert "promote another version first" in refused.text
    trail = [
        (e["action"], e["target"]) for e in KeyStore(project["folder"] / "state" / "keys.db").audit_log()
    ]
    assert ("rollback", f"{NAME}@2") in trail and ("promote", f"{NAME}@1") in trail


def test_pages_escape_what_they_show(project: dict[str, Any]) -> None:
    page = (
        TestClient(create_ui_app(project_for(project["path"])))
        .get('/login?next=/"><script>x()</script>')
        .text
    )
    assert "<script>x()</script>" not in page and "&lt;script&gt;" in page


def test_a_tuned_run_shows_its_trials_and_search_plots(tmp_path: Path, tiny_model: Path) -> None:
    from tests.unit.test_tune import tune_config

    config = tune_config(tmp_path, tiny_model, trials=3, pruner="none")
    config["serve"] = {"state_dir": str(tmp_path / "state")}
    path = tmp_path / "lmforge.yaml"
    path.write_text(yaml.safe_dump(config))
    run = run_pipeline(load_config(path))
    secret = KeyStore(tmp_path / "state" / "keys.db").create("predict", name="viewer").secret
    client = logged_in(create_ui_app(project_for(path)), secret)
    page = client.get(f"/runs/{run.run_id}").text
    assert "Hyperparameter trials" in page and page.count("<tr>") > 3
    plots = [p.name for p in (run.run_dir / "tune").glob("hpo_*.png")]
    assert plots
    for plot in plots:
        assert f"/runs/{run.run_id}/tune/{plot}" in page
        response = client.get(f"/runs/{run.run_id}/tune/{plot}")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert client.get(f"/runs/{run.run_id}/tune/trials.csv").status_code == 404  # PNGs only


def test_views_import_without_the_app() -> None:
    """Views render through `ui.pages`; importing one must not import `ui.app` (which imports
    every view: the other way round was an import cycle, hidden by imports inside functions)."""
    import pkgutil
    import subprocess
    import sys

    import lmforge.ui

    views = [m.name for m in pkgutil.iter_modules(lmforge.ui.__path__) if m.name.startswith("views_")]
    assert len(views) >= 7
    code = (
        f"import sys; import {', '.join(f'lmforge.ui.{v}' for v in views)}; "
        "assert 'lmforge.ui.app' not in sys.modules, 'a view imported the app'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    for view in views:  # nor lazily, inside a function
        assert "lmforge.ui.app" not in (Path(lmforge.ui.__path__[0]) / f"{view}.py").read_text(), view
