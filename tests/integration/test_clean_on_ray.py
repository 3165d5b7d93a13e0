"""The clean stage's per-row work on Ray Data (a local Ray started here) equals the local run."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lmforge.config import ExecutorConfig, load_config
from lmforge.data import on_ray
from lmforge.data.autolabel import auto_label
from lmforge.data.dedup import find_duplicates
from lmforge.pipeline.events import Event, EventBus
from lmforge.pipeline.runner import run_pipeline
from lmforge.ray_connect import start_local_ray
from tests.conftest import build_tiny_bert, make_rows, write_csv

ray = pytest.importorskip("ray")
RAY = ExecutorConfig(type="ray")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    start_local_ray(num_cpus=2)  # lmforge's own way: token mode, as Ray's default
    yield
    ray.shutdown()


def _messy_rows() -> list[tuple[str, str]]:
    rows = make_rows(per_class=25, seed=4)
    rows += [(text.upper() + "!!", label) for text, label in rows[:10]]  # exact (normal form)
    rows += [(text[:-1], label) for text, label in rows[10:25]]  # near: last letter dropped
    rows += [(f"{text} write to jo.doe{i}@example.com", label) for i, (text, label) in enumerate(rows[:8])]
    rows += [(f"{text} cafÃ© dÃ©jÃ  vu", label) for text, label in rows[30:36]]  # mojibake
    rows += [("  spaced \t out   text here  ", "billing"), ("x", "login")]
    return rows


def _clean(folder: Path, data: Path, executor: str) -> tuple[dict[str, pd.DataFrame], list[str]]:
    config = {
        "project": "clean-on-ray",
        "data": {"train": str(data)},
        "clean": {"label_noise": "off", "pii": "mask"},
        "executor": {"type": executor},
        "output_dir": str(folder / executor),
    }
    events: list[Event] = []
    result = run_pipeline(load_config(data=config), until="clean", events=EventBus([events.append]))
    clean = result.artifacts["clean"]
    outputs = {"train": clean.table("train")}
    for name in ("removed", "changed", "conflicts"):
        outputs[name] = pd.read_csv(clean.path(f"{name}.csv"))
    return outputs, [e.message for e in events if e.stage == "clean" and e.kind == "log"]


@pytest.mark.integration
def test_clean_stage_on_ray_equals_local(
    local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_csv(tmp_path / "messy.csv", _messy_rows())
    local, local_log = _clean(tmp_path, data, "local")
    # Small blocks, so the rows cross many Ray blocks and their order is what is tested.
    monkeypatch.setattr(on_ray, "BLOCK_ROWS", 16)
    on, ray_log = _clean(tmp_path, data, "ray")
    assert any("on Ray Data" in line for line in ray_log)
    assert not any("on Ray Data" in line for line in local_log)
    for name, frame in local.items():
        pd.testing.assert_frame_equal(on[name], frame, check_dtype=False, obj=name)
    reasons = set(local["removed"]["reason"])
    assert {"exact duplicate", "near duplicate"} <= reasons
    assert local["changed"]["changes"].str.contains("pii:email").sum() >= 1
    assert local["changed"]["changes"].str.contains("unicode").sum() >= 1


@pytest.mark.integration
def test_map_blocks_keeps_order_and_sketches_equal_local(local_ray: None) -> None:
    texts = [f"row {i} says {'spam ' * (i % 5)}ham and eggs" for i in range(230)]
    blocks = list(on_ray.map_blocks(RAY, partial(on_ray._given, _lengths), texts, block_rows=17))
    assert [n for block in blocks for n in block] == [len(t) for t in texts]
    assert len(blocks) == 14  # 230 rows in blocks of 17
    mapper = on_ray.block_mapper(RAY)
    assert find_duplicates(texts, threshold=0.7, mapper=mapper) == find_duplicates(texts, threshold=0.7)


def _slow_pid(texts: Sequence[str]) -> int:
    import os
    import time

    time.sleep(0.5)  # long enough that Ray Data's pool grows to a second actor
    return os.getpid()


@pytest.mark.integration
def test_blocks_reach_every_actor(local_ray: None) -> None:
    # The rows once went to Ray as one block, which one actor took whole while the other idled.
    pids = list(on_ray.map_blocks(RAY, partial(on_ray._given, _slow_pid), list(range(12)), block_rows=1))
    assert len(pids) == 12
    assert len(set(pids)) == 2  # the local Ray's 2 CPUs: one actor each


def _lengths(texts: Sequence[str]) -> list[int]:
    return [len(t) for t in texts]


def _fails(texts: Sequence[str]) -> list[Any]:
    raise ValueError(f"a block of {len(texts)} rows could not be read")


@pytest.mark.integration
def test_a_failing_block_fails_the_call(local_ray: None) -> None:
    # A worker's error reaches the stage (no block is silently dropped).
    with pytest.raises(Exception, match="could not be read"):
        list(on_ray.map_blocks(RAY, partial(on_ray._given, _fails), ["a", "b", "c"], block_rows=2))


@pytest.mark.integration
def test_embeddings_on_ray_equal_local(local_ray: None, tmp_path: Path) -> None:
    from lmforge.models.embed import embed

    model = str(build_tiny_bert(tmp_path / "bert"))
    rows = make_rows(per_class=8, seed=3)
    texts = [text for text, _ in rows]
    expected = embed(texts, model=model)
    got = on_ray.embed_on_ray(RAY, texts, model=model, base_dir=None, block_rows=7)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # The label stage's auto-labelling on those vectors gives the local labels (one Ray map
    # stands for the stage's two: the labelled rows and the unlabelled ones).
    on_ray_vectors = dict(zip(texts, got, strict=True))
    labeled, unlabeled = rows[::2], [text for text, _ in rows[1::2]]
    kwargs: dict[str, Any] = {
        "labeled_texts": [t for t, _ in labeled],
        "labeled_labels": [label for _, label in labeled],
        "method": "embeddings",
        "embedding_model": model,
    }
    here = auto_label(unlabeled, [], **kwargs)
    there = auto_label(unlabeled, [], embedder=lambda t: np.stack([on_ray_vectors[x] for x in t]), **kwargs)
    assert there.labels == here.labels
    np.testing.assert_allclose(there.probabilities, here.probabilities, atol=1e-4)


def _conversation_rows() -> list[dict[str, str]]:
    rows = [
        {"instruction": f"question {i}: what comes after {i} in counting", "input": "", "output": f"{i + 1}"}
        for i in range(40)
    ]
    rows += [{**r, "instruction": r["instruction"].upper() + "?"} for r in rows[:6]]  # exact
    rows += [{**r, "instruction": r["instruction"][:-1]} for r in rows[6:12]]  # near copies
    rows += [{**r, "output": f"{r['output']} or {r['output']}0"} for r in rows[12:15]]  # conflicts
    rows += [{**r, "input": f"mail jo.doe{i}@example.com"} for i, r in enumerate(rows[15:20])]
    rows += [{**r, "output": f"{r['output']} cafÃ© dÃ©jÃ  vu"} for r in rows[20:24]]  # mojibake
    return rows


@pytest.mark.integration
def test_generation_clean_on_ray_equals_local(
    local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The conversation clean's repair (every turn of every row) and near-duplicate sketches on
    # Ray Data give the local stage's rows, removals and conflicts.
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _conversation_rows()), encoding="utf-8")
    outputs: dict[str, dict[str, pd.DataFrame]] = {}
    for executor in ("local", "ray"):
        config = {
            "project": "generation-clean-on-ray",
            "task": "generation",
            "data": {"train": str(data)},
            "clean": {"keep_raw_pii": True, "pii": "mask"},  # so the clean stage's repair masks
            "executor": {"type": executor},
            "tracking": {"enabled": False},
            "output_dir": str(tmp_path / executor),
        }
        monkeypatch.setattr(on_ray, "BLOCK_ROWS", 16)  # rows cross blocks: the order is tested
        events: list[Event] = []
        result = run_pipeline(load_config(data=config), until="clean", events=EventBus([events.append]))
        clean = result.artifacts["clean"]
        outputs[executor] = {"train": clean.table("train")}
        for name in ("removed", "conflicts"):
            outputs[executor][name] = pd.read_csv(clean.path(f"{name}.csv"))
        logged = any("on Ray Data" in e.message for e in events if e.stage == "clean")
        assert logged == (executor == "ray")
    for name, frame in outputs["local"].items():
        pd.testing.assert_frame_equal(outputs["ray"][name], frame, check_dtype=False, obj=name)
    local = outputs["local"]
    assert {"exact duplicate", "near duplicate"} <= set(local["removed"]["reason"])
    assert len(local["conflicts"]) >= 3
    messages = " ".join(local["train"]["messages"])
    assert "jo.doe" not in messages and "Ã©" not in messages
