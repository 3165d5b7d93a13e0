"""Batch prediction vs the server on the same registered model, side by side: `lmforge predict`
over a CSV of --rows texts (emotion.csv's texts repeated) vs `lmforge serve` (ONNX, micro-
batched) answering the same texts posted as /v1/classify batches by concurrent clients.

    python bench/bench_predict.py --model support-intents@champion \
        --uri sqlite:///$PWD/examples/support-intents/mlruns.db

The registry is copied to a temporary folder first (MLflow may write to its database). The
model is whatever --model names; the figures say which, with its runtime and file. texts/s is
rows over the whole command (model loading included) and over scoring alone; peak RSS is the
process's high-water mark (wait4's ru_maxrss for predict, /proc VmHWM for the server).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import _free_port, _start  # the serve bench: server start-up


def synthesise(source: Path, rows: int, dest: Path) -> list[str]:
    """`rows` texts: `source`'s texts repeated in order, with an id column."""
    with source.open(encoding="utf-8") as handle:
        texts = [r["text"] for r in csv.DictReader(handle)]
    with dest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        for i in range(rows):
            writer.writerow([f"r{i}", texts[i % len(texts)]])
    return texts


def run_predict(args: argparse.Namespace, uri: str, data: Path, work: Path) -> dict[str, float | str]:
    out = work / "predictions.parquet"
    command = [sys.executable, "-m", "lmforge.cli", "predict", args.model, str(data), "--out", str(out)]
    command += ["--tracking-uri", uri, "--batch-size", str(args.batch_size), "--force"]
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env()
    )
    output = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"predict failed:\n{output}")
    rate = re.search(r"([\d,]+) texts/s", output)
    model = re.search(r"predicting with (.+)", output)
    return {
        "wall": wall,
        "rate_total": args.rows / wall,
        "rate_scoring": float(rate.group(1).replace(",", "")) if rate else float("nan"),
        "rss_mb": usage.ru_maxrss / 1024,
        "model": model.group(1).strip() if model else "?",
    }


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


async def _post_all(port: int, texts: list[str], batch: int, clients: int) -> float:
    import aiohttp

    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=connector) as client:

        async def worker() -> None:
            while batches:
                body = {"texts": batches.pop()}
                async with client.post("/v1/classify", json=body) as r:
                    await r.read()
                    if r.status != 200:
                        raise SystemExit(f"server answered {r.status}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - started


def run_server(args: argparse.Namespace, uri: str, texts: list[str], work: Path) -> dict[str, float]:
    port = _free_port()
    os.environ["PYTHONPATH"] = _env()["PYTHONPATH"]
    proc = _start(args.model, uri, work / "serve-state", port, {"max_texts": args.batch_size})
    try:
        asyncio.run(_post_all(port, texts[:256], args.batch_size, 2))  # warm-up
        wanted = [texts[i % len(texts)] for i in range(args.server_rows)]
        seconds = asyncio.run(_post_all(port, wanted, args.batch_size, args.clients))
        status = Path(f"/proc/{proc.pid}/status").read_text()
        hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) if "VmHWM" in status else 0  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait()
    return {"rate": args.server_rows / seconds, "rss_mb": hwm / 1024, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="support-intents@champion")
    parser.add_argument("--uri", default=f"sqlite:///{Path('examples/support-intents/mlruns.db').resolve()}")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/emotion.csv"))
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--server-rows", type=int, default=20_000, help="texts posted to the server")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per model call / per request")
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db = Path(args.uri.removeprefix("sqlite:///"))
        shutil.copy(db, work / "mlruns.db")  # artifacts stay where the database points
        uri = f"sqlite:///{work / 'mlruns.db'}"
        texts = synthesise(args.data, args.rows, work / "input.csv")
        predicted = run_predict(args, uri, work / "input.csv", work)
        served = run_server(args, uri, texts, work)
    print(f"\nmodel: {predicted['model']}; {args.rows:,} rows of {args.data.name} texts repeated")
    print(f"{'path':34} {'texts/s':>9} {'peak RSS MB':>12}")
    print(
        f"{'lmforge predict (whole command)':34} {predicted['rate_total']:9.0f} {predicted['rss_mb']:12.0f}"
    )
    print(f"{'lmforge predict (scoring only)':34} {predicted['rate_scoring']:9.0f} {'':>12}")
    label = f"lmforge serve, {args.clients} clients x {args.batch_size}"
    print(f"{label:34} {served['rate']:9.0f} {served['rss_mb']:12.0f}   ({args.server_rows:,} texts)")


if __name__ == "__main__":
    main()
