"""One rate limit per key across `lmforge serve --workers 2`: the shared token buckets (keys
database) vs per-process ones, under a burst; and what a take costs both ways.

    python bench/bench_serve_rate.py [--requests 200] [--rate 5/s] [--threads 16]

It registers a tiny random BERT (the tests' helper; its predictions do not matter here), then
for each arm (`serve.rate_limits: shared` and `process`) starts `lmforge serve --workers 2` on
127.0.0.1, creates a `--rate` key and fires `--requests` requests at once from `--threads`
threads over keep-alive connections, half on each worker (told apart by their metrics). A limit that
holds allows the burst plus the refill over the burst's duration; the ratio granted / allowed
should be <= 1 (per-process buckets: up to 2). Then the limiter alone, in this process: the
microseconds of one take, in memory and in the database, granted and refused, one thread and
two processes at once.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def register_tiny(folder: Path) -> dict[str, Any]:
    """A registered tiny classifier (version 1 of `test-project`) and its config."""
    from lmforge.config import load_config
    from lmforge.pipeline.runner import run_pipeline
    from tests.conftest import build_tiny_bert, fast_config, make_rows, write_csv

    config = fast_config(
        folder, write_csv(folder / "data.csv", make_rows()), build_tiny_bert(folder / "tiny")
    )
    config["train"]["epochs"] = 1
    config["export"] = {"onnx": False}
    run_pipeline(load_config(data=config))
    return config


def start(config: dict[str, Any], state: Path, rate_limits: str) -> tuple[subprocess.Popen[bytes], str]:
    config = {
        **config,
        "serve": {
            "state_dir": str(state),
            "reload_seconds": 0,
            "runtime": "torch",
            "rate_limits": rate_limits,
        },
    }
    path = state / "lmforge.yaml"
    path.write_text(yaml.safe_dump(config))
    port = _free_port()
    command = [sys.executable, "-m", "lmforge.cli", "serve", "test-project@1", "--workers", "2"]
    proc = subprocess.Popen([*command, "--port", str(port), "--config", str(path)], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not become ready")


_WORKER = re.compile(r'lmforge_requests_created\{route="/v1/classify",status="200"\} (\S+)')


def connect(url: str, free: str, admin: str, threads: int) -> tuple[list[httpx.Client], int]:
    """`threads` keep-alive connections, half on each worker, and how many workers were seen.

    Connections opened all at once are often all accepted by one worker (its accept loop takes
    them in one go), and the burst would never meet the other worker's buckets; so they are
    opened one at a time, and each is told apart by its worker's own metrics (the creation time
    of its request counter, set when that process served its first prediction)."""
    by_worker: dict[str, list[httpx.Client]] = {}
    for _ in range(threads * 4):
        if len(by_worker) == 2 and all(len(c) >= threads // 2 for c in by_worker.values()):
            break
        client = httpx.Client(base_url=url, timeout=60)
        client.post("/v1/classify", json={"texts": ["warm up"]}, headers=_bearer(free)).raise_for_status()
        found = _WORKER.search(client.get("/metrics", headers=_bearer(admin)).text)
        worker = by_worker.setdefault(found.group(1) if found else "?", [])
        if len(worker) < threads // 2:
            worker.append(client)
        else:
            client.close()
        time.sleep(0.02)
    return [c for clients in by_worker.values() for c in clients], len(by_worker)


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def burst(clients: list[httpx.Client], secret: str, requests: int) -> dict[str, Any]:
    """`requests` posts over `clients` (one thread each): statuses, span and latencies."""
    headers = _bearer(secret)

    def one(i: int) -> tuple[int, float, float]:
        started = time.perf_counter()
        client = clients[i % len(clients)]
        r = client.post("/v1/classify", json={"texts": ["my parcel is late"]}, headers=headers)
        return r.status_code, started, time.perf_counter()

    with ThreadPoolExecutor(len(clients)) as pool:
        answers = list(pool.map(one, range(requests)))
    span = max(a[2] for a in answers) - min(a[1] for a in answers)
    ms = {s: [(a[2] - a[1]) * 1000 for a in answers if a[0] == s] for s in {a[0] for a in answers}}
    return {"statuses": {s: len(v) for s, v in ms.items()}, "span": span, "ms": ms}


def serve_arms(args: argparse.Namespace, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from lmforge.serve.keys import KeyStore, parse_rate

    capacity, period = parse_rate(args.rate)
    results: dict[str, dict[str, Any]] = {}
    for arm in args.arms:
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp)
            store = KeyStore(state / "keys.db")
            limited = store.create("predict", rate=args.rate, name="limited").secret
            free = store.create("predict", name="free").secret
            admin = store.create("admin", name="admin").secret
            store.close()
            proc, url = start(config, state, arm)
            clients: list[httpx.Client] = []
            try:
                clients, workers = connect(url, free, admin, args.threads)
                r = burst(clients, limited, args.requests)
            finally:
                for client in clients:
                    client.close()
                proc.terminate()
                proc.wait()
        granted = r["statuses"].get(200, 0)
        allowed = capacity + capacity / period * r["span"]
        results[arm] = {**r, "granted": granted, "allowed": allowed, "workers": workers}
    print(
        f"\n{args.requests}-request burst at a {args.rate} key, "
        f"lmforge serve --workers 2, {args.threads} threads"
    )
    print(
        f"{'rate_limits':12} {'granted':>7} {'429':>5} {'other':>5} {'span s':>7} "
        f"{'allowed':>8} {'ratio':>6} "
        f"{'200 p50 ms':>10} {'429 p50 ms':>10} {'workers hit':>11}"
    )
    for arm, r in results.items():
        other = args.requests - r["granted"] - r["statuses"].get(429, 0)
        p50 = {s: statistics.median(r["ms"][s]) if r["ms"].get(s) else float("nan") for s in (200, 429)}
        print(
            f"{arm:12} {r['granted']:7d} {r['statuses'].get(429, 0):5d} {other:5d} {r['span']:7.2f} "
            f"{r['allowed']:8.1f} {r['granted'] / r['allowed']:6.2f} {p50[200]:10.1f} {p50[429]:10.1f} "
            f"{r['workers']:11d}"
        )
    return results


def _takes(url: str, key_id: int, rate: str, n: int, start: Any, out: Any) -> None:
    from lmforge.serve.key_rules import parse_rate
    from lmforge.serve.ratelimit_shared import SharedRateLimiter

    capacity, period = parse_rate(rate)
    limiter = SharedRateLimiter(url)
    start.wait()
    began = time.perf_counter()
    for _ in range(n):
        limiter.take(key_id, rate, capacity, capacity / period)
    out.put((time.perf_counter() - began) / n)


def limiter_cost(n: int) -> None:
    from lmforge.serve.keys import KeyStore, RateLimiter
    from lmforge.serve.ratelimit_shared import SharedRateLimiter

    with tempfile.TemporaryDirectory() as tmp:
        store = KeyStore(Path(tmp) / "keys.db")
        keys = {
            "granted": store.create("predict", rate="1000000/s").info,
            "refused": store.create("predict", rate="1/h").info,
        }
        rows = []
        for name, limiter in (("memory", RateLimiter()), ("shared", SharedRateLimiter(store.url))):
            for what, key in keys.items():
                limiter.check(key)
                began = time.perf_counter()
                for _ in range(n):
                    limiter.check(key)
                rows.append((name, what, (time.perf_counter() - began) / n * 1e6))
        ctx = mp.get_context("spawn")
        start, out = ctx.Event(), ctx.Queue()
        key = keys["granted"]
        procs = [
            ctx.Process(target=_takes, args=(store.url, key.id, key.rate, n, start, out)) for _ in range(2)
        ]
        for proc in procs:
            proc.start()
        time.sleep(2)  # both imported and connected
        start.set()
        per_take = [out.get(timeout=300) for _ in procs]
        for proc in procs:
            proc.join()
        rows.append(("shared", "granted, 2 processes at once", statistics.mean(per_take) * 1e6))
    print(f"\none take, {n} times ({sys.platform}, SQLite keys.db in a temp folder)")
    print(f"{'limiter':8} {'case':30} {'us/take':>9}")
    for name, what, us in rows:
        print(f"{name:8} {what:30} {us:9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rate", default="5/s")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--arms", nargs="+", default=["shared", "process"], choices=["shared", "process"])
    parser.add_argument("--takes", type=int, default=2000, help="takes per limiter-cost case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = register_tiny(Path(tmp))
        serve_arms(args, config)
    limiter_cost(args.takes)


if __name__ == "__main__":
    main()
