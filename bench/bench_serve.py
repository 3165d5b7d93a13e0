"""Serving throughput and latency, side by side: torch one request at a time vs ONNX int8
with micro-batching, at 1, 8 and 32 concurrent clients on loopback; plus feedback
durability under SIGKILL.

    python bench/bench_serve.py --config examples/support-intents/lmforge.yaml --model support-intents

The model must be registered with its export (run the example once). Each server runs alone
in its own process; load loops stop after --requests requests or --seconds, whichever first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

SHORT_TEXTS = [
    "I can't log in to my account",
    "Where is my parcel? It was due yesterday",
    "Please cancel my subscription",
    "Why was I charged twice this month?",
    "The app crashes when I open settings",
    "Reset my password please",
    "Do you ship to Canada?",
    "Refund for the duplicate payment",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(
    ref: str, uri: str, state: Path, port: int, serve: dict, auth: bool = False
) -> subprocess.Popen[bytes]:
    code = (
        "import sys, json, uvicorn\n"
        "from lmforge.config import ServeConfig\n"
        "from lmforge.serve.app import create_app\n"
        "a = json.loads(sys.argv[1])\n"
        "app = create_app(a['ref'], a['uri'], ServeConfig(**a['serve']), auth=a['auth'])\n"
        "uvicorn.run(app, host='127.0.0.1', port=a['port'], log_level='error')\n"
    )
    args = {
        "ref": ref,
        "uri": uri,
        "port": port,
        "auth": auth,
        "serve": {"state_dir": str(state), "reload_seconds": 0, **serve},
    }
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(args)])
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not become ready")


async def _load(
    port: int, clients: int, requests: int, seconds: float, key: str | None = None
) -> dict[str, float]:
    """`clients` concurrent loops posting one short text each; aiohttp, because httpx's
    connection pool itself caps out near 300 req/s at 32 connections on this machine."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    done = 0
    stop_at = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession(
        f"http://127.0.0.1:{port}", connector=connector, headers=headers
    ) as client:

        async def worker(i: int) -> None:
            nonlocal done, errors
            while done < requests and time.perf_counter() < stop_at:
                done += 1
                text = SHORT_TEXTS[(i + done) % len(SHORT_TEXTS)]
                started = time.perf_counter()
                async with client.post("/v1/classify", json={"texts": [text]}) as r:
                    await r.read()
                    errors += r.status != 200
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "rps": len(ms) / wall,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "n": len(ms),
        "errors": errors,
    }


def throughput(args: argparse.Namespace) -> None:
    arms = {
        "torch, 1 at a time": ({"runtime": "torch", "max_batch_size": 1, "max_wait_ms": 0}, False),
        "ONNX int8, micro-batched": ({"runtime": "onnx", "max_batch_size": 32, "max_wait_ms": 5}, False),
        "  same, with API key": ({"runtime": "onnx", "max_batch_size": 32, "max_wait_ms": 5}, True),
    }
    results: dict[str, dict[int, dict[str, float]]] = {}
    for name, (serve, auth) in arms.items():
        port = _free_port()
        with tempfile.TemporaryDirectory() as state:
            key = None
            if auth:
                from lmforge.serve.keys import KeyStore

                key = KeyStore(Path(state) / "keys.db").create("predict", name="bench").secret
            proc = _start(args.model, args.uri, Path(state), port, serve, auth=auth)
            try:
                asyncio.run(_load(port, 4, 40, 10, key))  # warm-up
                results[name] = {
                    c: asyncio.run(_load(port, c, args.requests, args.seconds, key)) for c in args.clients
                }
            finally:
                proc.terminate()
                proc.wait()
    print(f"\n{'arm':28} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'n':>6} {'errors':>6}")
    for name, by_clients in results.items():
        for c, r in by_clients.items():
            print(
                f"{name:28} {c:7d} {r['rps']:8.1f} {r['p50']:8.1f} {r['p99']:8.1f} "
                f"{r['n']:6.0f} {r['errors']:6.0f}"
            )
    base, fast, _ = results.values()
    for c in args.clients:
        print(
            f"ratio at {c:2d} clients: {fast[c]['rps'] / base[c]['rps']:.2f}x req/s "
            f"(p99 {fast[c]['p99']:.0f} ms vs {base[c]['p99']:.0f} ms)"
        )


def durability(args: argparse.Namespace) -> None:
    """N concurrent feedback posts; the server is SIGKILLed mid-way; every acknowledged
    feedback id must be in the store afterwards."""
    from lmforge.serve.store import ServeStore

    port = _free_port()
    with tempfile.TemporaryDirectory() as state:
        proc = _start(args.model, args.uri, Path(state), port, {"runtime": "onnx"})
        acknowledged: list[int] = []
        attempted = 0

        async def post_all() -> None:
            nonlocal attempted
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

                async def one(i: int) -> None:
                    nonlocal attempted
                    attempted += 1
                    try:
                        r = await client.post(
                            "/v1/feedback", json={"text": f"feedback text {i}", "rating": 1}
                        )
                    except httpx.HTTPError:
                        return
                    if r.status_code == 200:
                        acknowledged.append(r.json()["id"])

                async def killer() -> None:
                    while len(acknowledged) < args.feedback // 2:
                        await asyncio.sleep(0.005)
                    os.kill(proc.pid, signal.SIGKILL)

                sem = asyncio.Semaphore(16)

                async def bounded(i: int) -> None:
                    async with sem:
                        await one(i)

                await asyncio.gather(killer(), *(bounded(i) for i in range(args.feedback)))

        asyncio.run(post_all())
        proc.wait()
        stored = {f.id for f in ServeStore(f"sqlite:///{Path(state) / 'feedback.db'}").feedback()}
        lost = [i for i in acknowledged if i not in stored]
        print(
            f"\nfeedback durability: {attempted} posted, {len(acknowledged)} acknowledged before SIGKILL, "
            f"{len(stored)} stored, acknowledged but lost: {len(lost)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="support-intents@champion")
    parser.add_argument("--uri", default=f"sqlite:///{Path('examples/support-intents/mlruns.db').resolve()}")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=600, help="per load level")
    parser.add_argument("--seconds", type=float, default=30.0, help="per load level")
    parser.add_argument("--feedback", type=int, default=400)
    parser.add_argument("--part", nargs="+", default=["throughput", "durability"])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if "throughput" in args.part:
        throughput(args)
    if "durability" in args.part:
        durability(args)


if __name__ == "__main__":
    main()
