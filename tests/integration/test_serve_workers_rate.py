"""`lmforge serve --workers 2` for real on 127.0.0.1: a key's rate holds for the whole server,
not once per worker process."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from lmforge.config import load_config
from lmforge.pipeline.runner import run_pipeline
from lmforge.serve.keys import KeyStore
from tests.conftest import fast_config, make_rows, write_csv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("workers")
    config = fast_config(folder, write_csv(folder / "data.csv", make_rows()), tiny_model)
    config["train"]["epochs"] = 1  # what the model predicts does not matter here
    config["export"] = {"onnx": False}
    run_pipeline(load_config(data=config))
    state = folder / "state"
    config["serve"] = {"state_dir": str(state), "reload_seconds": 0, "runtime": "torch", "threads": 1}
    (folder / "lmforge.yaml").write_text(yaml.safe_dump(config))
    store = KeyStore(state / "keys.db")
    keys = {rate: store.create("predict", rate=rate, name=rate).secret for rate in ("5/h", "4/s")}
    keys["free"] = store.create("predict", name="free").secret
    keys["admin"] = store.create("admin", name="admin").secret
    port = _free_port()
    command = [sys.executable, "-m", "lmforge.cli", "serve", "test-project@1", "--workers", "2"]
    proc = subprocess.Popen(
        [*command, "--port", str(port), "--config", str(folder / "lmforge.yaml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            proc.kill()
            pytest.fail(f"the server did not start: {proc.communicate()[1].decode()[-2000:]}")
        clients = _spread(url, keys)
        yield {"clients": clients, "keys": keys}
        for client in clients:
            client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


_WORKER = re.compile(r'lmforge_requests_created\{route="/v1/classify",status="200"\} (\S+)')


def _spread(url: str, keys: dict[str, str], per_worker: int = 4) -> list[httpx.Client]:
    """Keep-alive connections, `per_worker` on each worker. Opened at once they may all land on
    one worker (its accept loop takes them in one go), so they are opened one at a time and
    told apart by the worker's metrics (when its request counter was created)."""
    by_worker: dict[str, list[httpx.Client]] = {}
    for _ in range(per_worker * 10):
        if len(by_worker) == 2 and all(len(c) == per_worker for c in by_worker.values()):
            break
        client = httpx.Client(base_url=url, timeout=30)
        auth = {"Authorization": f"Bearer {keys['free']}"}
        client.post("/v1/classify", json={"texts": ["hello"]}, headers=auth).raise_for_status()
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {keys['admin']}"}).text
        found = _WORKER.search(metrics)
        assert found is not None, metrics
        clients = by_worker.setdefault(found.group(1), [])
        if len(clients) < per_worker:
            clients.append(client)
        else:
            client.close()
        time.sleep(0.02)
    assert len(by_worker) == 2, "every connection went to one worker"
    return [c for clients in by_worker.values() for c in clients]


def _burst(clients: list[httpx.Client], secret: str, n: int) -> list[httpx.Response]:
    """`n` requests from one thread per connection."""
    headers = {"Authorization": f"Bearer {secret}"}

    def one(i: int) -> httpx.Response:
        return clients[i % len(clients)].post("/v1/classify", json={"texts": ["late"]}, headers=headers)

    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.integration
def test_two_workers_grant_the_burst_once(two_workers: dict[str, Any]) -> None:
    """A 5/h key (refill negligible): exactly 5 of 60 requests pass across both workers, the
    rest get 429 with a Retry-After (per-process buckets let 10 through: one burst per worker)."""
    answers = _burst(two_workers["clients"], two_workers["keys"]["5/h"], 60)
    assert Counter(r.status_code for r in answers) == {200: 5, 429: 55}
    refused = next(r for r in answers if r.status_code == 429)
    assert 1 <= int(refused.headers["Retry-After"]) <= 720 and "5/h" in refused.json()["detail"]


@pytest.mark.integration
def test_two_workers_hold_a_per_second_rate(two_workers: dict[str, Any]) -> None:
    """A 4/s key under a 120-request burst: the burst plus the refill over its duration, at most."""
    started = time.monotonic()
    answers = _burst(two_workers["clients"], two_workers["keys"]["4/s"], 120)
    elapsed = time.monotonic() - started
    granted = sum(r.status_code == 200 for r in answers)
    assert {r.status_code for r in answers} <= {200, 429}
    assert 4 <= granted <= 4 + 4 * elapsed + 1
