"""The pure parts of the train stage on Ray Train: each worker's share of the batch, and which
train stages key the executor (a Ray Train artifact records its workers; a local one does not)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.config import load_config
from lmforge.errors import ConfigError
from lmforge.pipeline.graph import stages_for
from lmforge.training.ray_run import worker_batch


@pytest.mark.parametrize(("batch", "workers", "share"), [(8, 2, 4), (8, 1, 8), (12, 3, 4), (4, 4, 1)])
def test_each_worker_takes_an_equal_share_of_the_global_batch(batch: int, workers: int, share: int) -> None:
    assert worker_batch(batch, workers) == share


@pytest.mark.parametrize(
    ("batch", "workers", "hint"),
    [(6, 4, "e.g. 4 or 8"), (2, 4, "e.g. 4"), (32, 3, "e.g. 30 or 33"), (1, 2, "e.g. 2")],
)
def test_a_batch_that_does_not_split_is_refused_naming_both_keys(batch: int, workers: int, hint: str) -> None:
    with pytest.raises(ConfigError) as error:
        worker_batch(batch, workers)
    message = str(error.value)
    assert "\n" not in message  # one line, not a traceback
    assert f"train.batch_size: {batch} " in message and f"executor.train_workers: {workers} " in message
    assert f"multiple of {workers} ({hint})" in message


def test_no_workers_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"executor\.train_workers: 0"):
        worker_batch(8, 0)


@pytest.mark.parametrize("task", ["classification", "generation", "language-modeling"])
@pytest.mark.parametrize(("workers", "keyed"), [(0, False), (2, True)])
def test_the_train_stage_keys_the_executor_only_on_ray_train(
    tmp_path: Path, task: str, workers: int, keyed: bool
) -> None:
    config = load_config(
        data={
            "task": task,
            "data": {"train": str(tmp_path / "rows.csv")},
            "model": str(tmp_path / "model"),
            "executor": {"type": "ray", "train_workers": workers},
        }
    )
    train = next(spec for spec in stages_for(config) if spec.name == "train")
    assert ("executor" in train.sections) is keyed
    assert ("executor" in train.unkeyed) is not keyed


@pytest.mark.parametrize("task", ["classification", "generation"])
def test_a_batch_that_does_not_split_fails_at_load(tmp_path: Path, task: str) -> None:
    base = {
        "task": task,
        "data": {"train": str(tmp_path / "rows.csv")},
        "model": str(tmp_path / "model"),
        "train": {"batch_size": 6},
        "executor": {"type": "ray", "train_workers": 4},
    }
    with pytest.raises(ConfigError) as error:
        load_config(data=base)
    assert "train.batch_size: 6 does not split over executor.train_workers: 4" in str(error.value)
    # A tuned batch is not known yet: the train stage checks it when it starts.
    assert load_config(data={**base, "tune": {"enabled": True}}).train.batch_size == 6
    assert load_config(data={**base, "train": {"batch_size": 8}}).executor.train_workers == 4


def test_train_workers_without_ray_is_refused(tmp_path: Path) -> None:
    config = {"data": {"train": str(tmp_path / "rows.csv")}, "executor": {"train_workers": 2}}
    with pytest.raises(ConfigError) as error:
        load_config(data=config)
    assert "executor.train_workers: 2 needs executor.type: ray" in str(error.value)
