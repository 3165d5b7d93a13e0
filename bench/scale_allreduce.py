"""bench_scale.py `--part allreduce`: the gradient all-reduce of a data-parallel step alone.

Two gloo processes on this machine, each with the gradients of one real minilm-l6 backward pass
on its half of a batch of 32 `emotion.csv` texts (max_length 64), all-reduce them `--repeats`
times two ways, alternating: DDP's plain all-reduce of every gradient (the mean over workers, in
25 MB buckets, each divided and sent in place as DDP's hook does; the copy of the gradients into
the buckets, which DDP makes either way, is left out) and `training/row_allreduce.py`'s (the word embedding's
touched rows and the other gradients, in one all-reduce). Printed: the values sent, the median
seconds of each, their ratio, and whether both left the same gradients (they must, exactly).
Nothing else runs beside them, so this is the communication's own cost, not what it adds to a
step (there it overlaps the backward pass, as far as the cores allow).

    python bench/bench_scale.py --part allreduce [--repeats 20]
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
BUCKET_VALUES = 25 * 2**20 // 4  # DDP's default bucket_cap_mb of fp32 values


def _rank(rank: int, port: int, repeats: int, out: str) -> None:
    import pandas as pd
    import torch
    import torch.distributed as dist

    from lmforge.models.load import load_classifier
    from lmforge.models.resolve import resolve_model
    from lmforge.training.row_allreduce import reduce_bucket, row_sparse_parameters

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    texts = pd.read_csv(DATA / "emotion.csv")["text"].sample(n=32, random_state=0).tolist()[rank::2]
    tokenizer, model = load_classifier(resolve_model("minilm-l6", ROOT), [str(i) for i in range(6)])
    batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    model(**batch, labels=torch.zeros(len(texts), dtype=torch.long)).loss.backward()
    parameters = [p for p in model.parameters() if p.grad is not None]
    sparse_ids = {id(p) for p in row_sparse_parameters(model)}
    flat = torch.cat([p.grad.detach().reshape(-1) for p in parameters])
    sizes = [p.numel() for p in parameters]
    sparse = {i for i, p in enumerate(parameters) if id(p) in sparse_ids}

    def views(buffer: Any) -> list[Any]:
        return [v.view_as(p) for v, p in zip(buffer.split(sizes), parameters, strict=True)]

    def dense(buffer: Any) -> Any:
        # DDP's allreduce_hook on each 25 MB bucket: divide in place, all-reduce in place.
        works = []
        for start in range(0, buffer.numel(), BUCKET_VALUES):
            chunk = buffer[start : start + BUCKET_VALUES].div_(2)
            works.append(dist.all_reduce(chunk, async_op=True))
        for work in works:
            work.wait()
        return buffer

    def rows(buffer: Any) -> Any:
        reduce_bucket(buffer, views(buffer), sparse, 2)
        return buffer

    timings: dict[str, list[float]] = {"dense": [], "rows": []}
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for name, reduce in (("dense", dense), ("rows", rows)):
            buffer = flat.clone()
            dist.barrier()
            started = time.perf_counter()
            results[name] = reduce(buffer)
            timings[name].append(time.perf_counter() - started)
    same = bool(torch.equal(results["dense"], results["rows"]))
    embedding = views(flat)[next(iter(sparse))]
    touched = int(embedding.ne(0).any(dim=1).sum())
    if rank == 0:
        Path(out).write_text(
            json.dumps(
                {
                    "values": flat.numel(),
                    "embedding_rows": embedding.shape[0],
                    "embedding_width": embedding.shape[1],
                    "touched_rows_rank0": touched,
                    "dense_s": statistics.median(timings["dense"]),
                    "rows_s": statistics.median(timings["rows"]),
                    "same": same,
                }
            )
        )
    dist.destroy_process_group()


def allreduce_part(repeats: int) -> None:
    import torch.multiprocessing as mp

    if not (DATA / "emotion.csv").exists():
        raise SystemExit(f"skipped: {DATA / 'emotion.csv'} is absent")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        mp.spawn(_rank, args=(port, repeats, str(out)), nprocs=2, join=True)
        r = json.loads(out.read_text())
    dense_mb = r["values"] * 4 / 1e6
    embedding = r["embedding_rows"] * r["embedding_width"]
    print(
        f"minilm-l6: {r['values'] / 1e6:.1f}M gradient values ({dense_mb:.0f} MB), of which the word "
        f"embedding {embedding / 1e6:.1f}M; rank 0's half batch touched {r['touched_rows_rank0']} of its "
        f"{r['embedding_rows']:,} rows"
    )
    print("| all-reduce | median s | vs plain |")
    print("| --- | ---: | ---: |")
    print(f"| DDP's plain, every gradient | {r['dense_s']:.3f} | 1.00 |")
    print(f"| touched embedding rows + the rest | {r['rows_s']:.3f} | {r['rows_s'] / r['dense_s']:.2f} |")
    print(f"same gradients: {r['same']}")
    if not r["same"]:
        sys.exit(1)
