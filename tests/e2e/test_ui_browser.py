"""The UI in a real headless Chromium (Playwright driving /usr/bin/chromium) against a server
on 127.0.0.1: log in, read runs and the report, promote a version, answer two review items,
send playground feedback; a screenshot of every page at 1280x800 lands in the test's tmp
folder (look at them when the layout changes)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lmforge.config import load_config
from tests.conftest import make_rows, write_csv
from tests.ui_support import ui_project

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api")
if CHROMIUM is None:
    pytest.skip("no chromium on this machine (apt-get install chromium)", allow_module_level=True)
NAME = "test-project"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[dict[str, Any]]:
    import uvicorn

    from lmforge.ui.app import create_ui_app, project_for

    project = ui_project(tmp_path_factory.mktemp("ui-browser"), tiny_model, review_queue=True)
    path, folder = project["path"], project["folder"]  # version 2 is champion

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_ui_app(project_for(path)), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline, "UI server did not start"
        time.sleep(0.05)
    yield {
        "url": f"http://127.0.0.1:{port}",
        "admin": project["keys"]["admin"],
        "run_id": project["runs"][0].run_id,
        "folder": folder,
        "config": load_config(path),
        "tiny_model": str(tiny_model),
    }
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def test_login_runs_report_and_promote(site: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    shots = tmp_path / "screenshots"
    shots.mkdir()

    page.goto(f"{site['url']}/models")
    assert "/login" in page.url  # not logged in: sent to the login page, coming back after
    page.screenshot(path=str(shots / "login.png"))
    page.fill("#key", site["admin"])
    page.click("#login")
    page.wait_for_url("**/models")

    page.goto(f"{site['url']}/runs")
    assert page.locator("#runs tr").count() == 3  # header + 2 runs
    page.screenshot(path=str(shots / "runs.png"))
    page.click(f"text={site['run_id']}")
    page.wait_for_url(f"**/runs/{site['run_id']}")
    assert page.locator("#stages tr").count() > 10
    page.screenshot(path=str(shots / "run.png"), full_page=True)

    report = page.locator("#report-link").get_attribute("href")
    page.goto(f"{site['url']}{report}")
    assert "Quality gate" in page.content()
    page.screenshot(path=str(shots / "report.png"))

    page.goto(f"{site['url']}/models")
    page.screenshot(path=str(shots / "models.png"))
    page.click(f"#{NAME}-v1 button:has-text('Promote')")
    page.wait_for_selector("#message")
    assert "version 1 is the champion" in page.inner_text("#message")
    assert "champion" in page.inner_text(f"#{NAME}-v1")

    # Review queue: two items answered with the keyboard, written where the next run reads them.
    page.goto(f"{site['url']}/review")
    page.screenshot(path=str(shots / "review.png"))
    left = int(page.inner_text("#left").split()[0])
    page.keyboard.press("a")  # accept the suggestion
    page.wait_for_selector("#message")
    page.keyboard.press("2")  # the second label
    page.wait_for_selector("#message")
    assert int(page.inner_text("#left").split()[0]) == left - 2
    from lmforge.data.review import read_answers

    answers = read_answers(site["config"].resolve_path(site["config"].label.reviewed))
    assert len(answers) == 2

    # Playground: classify, say it is wrong, send a correction; it is in the feedback store.
    page.goto(f"{site['url']}/playground")
    page.fill("#text", "where is my parcel")
    page.click("#run")
    page.wait_for_selector("#feedback:not([hidden])")
    page.screenshot(path=str(shots / "playground.png"))
    for button in ("#down", "#correct"):  # a thumbs-down, then the right label
        if button == "#correct":
            page.select_option("#correction", index=1)
        with page.expect_response("**/playground/feedback") as sent:
            page.click(button)
        assert sent.value.status == 200
    from lmforge.serve.store import ServeStore
    from lmforge.state_dir import StateDir

    stored = ServeStore(StateDir.of(site["config"].serve).feedback_url).feedback()
    assert {f.kind for f in stored} >= {"rating", "label"}
    assert all(f.text == "where is my parcel" and f.key_name == "admin-user" for f in stored)

    page.goto(f"{site['url']}/monitor")
    page.screenshot(path=str(shots / "monitor.png"))

    # Start a run from the browser on a tiny dataset and watch it finish.
    upload = tmp_path / "tickets.csv"
    write_csv(upload, make_rows())
    page.goto(f"{site['url']}/start")
    page.set_input_files("input[name=file]", str(upload))
    page.click("button:has-text('Upload')")
    page.wait_for_selector("#start-form")
    fields = {"model": site["tiny_model"], "train.epochs": "3", "train.max_length": "16",
              "train.batch_size": "8", "train.learning_rate": "0.005"}  # fmt: skip
    for name, value in fields.items():
        page.fill(f'[name="{name}"]', value)
    page.screenshot(path=str(shots / "start.png"), full_page=True)
    page.click("button:has-text('Validate and start the run')")
    page.wait_for_url("**/runs/2*", timeout=120_000)
    page.wait_for_function(
        "document.querySelector('#run-status').innerText === 'succeeded'", timeout=180_000, polling=1000
    )
    assert page.locator("#report-link").count() == 1
    for shot in shots.iterdir():  # every page rendered something at 1280x800
        assert shot.stat().st_size > 10_000, shot.name
    # Nothing in the layout overflows 1280 px horizontally.
    for path in ("/runs", f"/runs/{site['run_id']}", "/models", "/monitor", "/playground", "/review"):
        page.goto(f"{site['url']}{path}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280, path
