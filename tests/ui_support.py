"""The small finished project that the UI tests (unit and browser) look at."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from lmforge.config import load_config
from lmforge.pipeline.runner import RunResult, run_pipeline
from lmforge.serve.keys import KeyStore
from lmforge.ui.csrf import HEADER
from tests.conftest import fast_config, make_rows, write_csv

UNLABELED = ["invoice refund charge please", "password login locked again", "parcel delivery courier why"]


def ui_project(
    folder: Path, model: Path, *, seeds: tuple[int, ...] = (42, 3), review_queue: bool = False
) -> dict[str, Any]:
    """Runs the pipeline once per train seed (each run registers a version that passes the gate,
    so the last is champion) and makes one key per scope plus a revoked admin key.

    With `review_queue`, three unlabelled rows are auto-labelled at min_confidence 1.0, so every
    one of them waits in the review queue for a person."""
    rows = [*make_rows(), *((text, "") for text in UNLABELED)] if review_queue else make_rows()
    config = fast_config(folder, write_csv(folder / "data.csv", rows), model)
    if review_queue:
        config["label"].update(method="embeddings", min_confidence=1.0)
        config["clean"] = {"label_noise": "off"}
    config["serve"] = {"state_dir": str(folder / "state")}
    config["gate"] = {"min_gain": -1.0, "champion_tolerance": 1.0}
    path = folder / "lmforge.yaml"
    runs: list[RunResult] = []
    for seed in seeds:
        config["train"]["seed"] = seed
        path.write_text(yaml.safe_dump(config))
        runs.append(run_pipeline(load_config(path)))
    store = KeyStore(folder / "state" / "keys.db")
    keys = {s: store.create(s, name=f"{s}-user").secret for s in ("predict", "feedback", "admin")}
    keys["revoked"] = store.create("admin", name="gone").secret
    store.revoke("gone")
    return {"path": path, "folder": folder, "keys": keys, "runs": runs, "config": config}


def page_token(html: str) -> str:
    """The CSRF token a page embeds in its forms (the login form's, on the login page)."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no form carrying a csrf_token"
    return found.group(1)


def log_in(client: TestClient, key: str, **form: str) -> Response:
    """Log in as a browser does: open the login page, then post its form with the key."""
    token = page_token(client.get("/login").text)
    return client.post("/login", data={"key": key, "csrf_token": token, **form}, follow_redirects=False)


def logged_in(app: FastAPI, key: str | None, **client_options: Any) -> TestClient:
    """A client of `app`, logged in with `key` unless it is None. Like the UI's own scripts,
    it sends the session's CSRF token (from the page's meta tag) as a header with every request."""
    client = TestClient(app, **client_options)
    if key:
        response = log_in(client, key)
        assert response.status_code == 303, response.text
        meta = re.search(r'<meta name="csrf-token" content="([^"]+)"', client.get("/runs").text)
        assert meta, "a logged-in page has no csrf-token meta tag"
        client.headers[HEADER] = meta.group(1)
    return client
