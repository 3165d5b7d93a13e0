"""`lmforge predict --ray local`: Ray Data reads the file, one actor scores it, the driver writes
the one output file; the rows, ids, bad rows and answers equal the single-process run's."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lmforge.config import ServeConfig
from lmforge.ray_connect import start_local_ray
from tests.unit.test_predict import NAME, _texts, predictor, read_output, registry, write_input

ray = pytest.importorskip("ray")

__all__ = ["predictor", "registry"]  # module fixtures shared with test_predict


@pytest.fixture(scope="module")
def local_ray() -> Any:
    start_local_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def test_ray_predictions_equal_the_single_process_ones(
    registry: dict[str, Any], predictor: Any, local_ray: Any, tmp_path: Path
) -> None:
    """One Ray run with as many actors as the local Ray has CPUs (each loads the model: tens of
    seconds on 2 cores). Its reads once asked for a CPU too and waited for ever behind the
    actors, so the run is bounded here instead of hanging the suite."""
    from lmforge.predict import predict_file
    from lmforge.predict.on_ray import predict_on_ray

    records: list[dict[str, Any]] = [{"text": t} for t in _texts(23)]
    records[4]["text"] = " "
    source = write_input(tmp_path / "in.csv", records)
    serve = ServeConfig(state_dir=str(tmp_path / "state"), runtime=predictor.runtime)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        run = pool.submit(
            predict_on_ray,
            f"{NAME}@champion",
            registry["uri"],
            serve,
            source,
            tmp_path / "ray.parquet",
            chunk_rows=5,
            actors=2,
        )
        result = run.result(timeout=600)  # ~30 s; a stalled pool would never return
    expected = predict_file(predictor, source, tmp_path / "one.parquet", chunk_rows=5)
    assert result.bad_rows == expected.bad_rows == [(6, "empty text")]  # CSV data starts at row 2
    assert (result.rows, result.scored) == (expected.rows, expected.scored) == (23, 22)
    got, want = read_output(tmp_path / "ray.parquet"), read_output(tmp_path / "one.parquet")
    assert got["row"].tolist() == list(range(23))  # positions in file order across Ray's blocks
    assert got["label"].tolist() == want["label"].tolist()
    assert got["error"].tolist() == want["error"].tolist()
    # The int8 graph quantizes activations per batch, and Ray's blocks are not the
    # single-process chunks: probabilities within 0.01.
    probs = [c for c in want.columns if c.startswith("prob")]
    pd.testing.assert_frame_equal(got[probs], want[probs], atol=1e-2)


def test_ray_refuses_an_unknown_alias_before_starting(registry: dict[str, Any], tmp_path: Path) -> None:
    from lmforge.predict.on_ray import predict_on_ray
    from lmforge.registry.client import RegistryError

    source = write_input(tmp_path / "in.csv", [{"text": "refund"}])
    with pytest.raises(RegistryError, match="has no alias 'staging'"):
        predict_on_ray(f"{NAME}@staging", registry["uri"], ServeConfig(), source, tmp_path / "o.parquet")
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.parametrize(
    ("actors", "threads", "cpus", "fits"),
    [(1, 1, 2, True), (2, 1, 2, True), (3, 1, 2, False), (2, 2, 2, False)],
)
def test_a_local_actor_pool_must_fit_the_local_cpus(
    actors: int, threads: int, cpus: float, fits: bool
) -> None:
    from lmforge.errors import DataError
    from lmforge.predict.on_ray import check_actors_fit

    if fits:
        check_actors_fit(actors, threads, cpus)
    else:
        with pytest.raises(
            DataError, match=rf"--ray-actors {actors} x {threads} thread\(s\).*local Ray has 2"
        ):
            check_actors_fit(actors, threads, cpus)
