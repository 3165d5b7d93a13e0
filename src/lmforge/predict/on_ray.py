"""`lmforge predict --ray ADDRESS`: the same prediction on Ray Data.

The file is read by Ray Data (`read_csv` / `read_json` / `read_parquet`), scored by
`map_batches` with an actor class that loads the model once per actor (from the registry,
pinned to the version the driver resolved, so an alias moving mid-run changes nothing), and
streamed back in file order to the driver, which writes the one output file exactly as the
single-process path does (`writer.py`: a temporary file renamed at the end).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmforge.config import ServeConfig
from lmforge.errors import DataError
from lmforge.predict.reader import Chunk, count_rows, open_source
from lmforge.predict.run import PredictResult, Progress, chunk_table, scorer, write_tables
from lmforge.predict.writer import check_output
from lmforge.ray_logs import ray_data_console_warnings_only

# Row number of a file's first data row, as the single-process reader counts them.
FIRST_ROW = {"csv": 2, "jsonl": 1, "parquet": 1}


class RayScorer:
    """One Ray actor: the model loaded once, then one pyarrow batch in, its output rows out."""

    def __init__(
        self,
        ref: str,
        uri: str,
        serve: dict[str, Any],
        column: str,
        id_column: str | None,
        batch_size: int,
        max_new_tokens: int,
    ) -> None:
        from lmforge.serve.state import ModelHolder
        from lmforge.state_dir import StateDir

        cfg = ServeConfig(**serve)
        predictor = ModelHolder(ref, uri, cfg, StateDir.of(cfg)).load_now().predictor
        self.score = scorer(predictor, batch_size, max_new_tokens)
        self.column = column
        self.id_column = id_column

    def __call__(self, batch: Any) -> Any:
        size = batch.num_rows
        texts = batch.column(self.column).to_pylist()
        if self.id_column:
            ids: list[Any] = [None if v is None else str(v) for v in batch.column(self.id_column).to_pylist()]
        else:
            ids = [0] * size  # positions are given by the driver, which sees the rows in order
        return chunk_table(Chunk(ids, [0] * size, texts), self.id_column, self.score)


def predict_on_ray(
    ref: str,
    uri: str,
    serve: ServeConfig,
    source: Path,
    output: Path,
    *,
    address: str = "local",
    column: str = "text",
    id_column: str | None = None,
    chunk_rows: int = 1024,
    batch_size: int = 32,
    actors: int = 1,
    force: bool = False,
    max_new_tokens: int = 64,
    progress: Progress | None = None,
) -> PredictResult:
    """`address` "local" starts a local cluster (ended at the end); else `ray.init(address)`."""
    import ray

    from lmforge.registry import client_for, resolve

    if chunk_rows < 1 or batch_size < 1 or actors < 1:
        raise DataError("--chunk-rows, --batch-size and --ray-actors must be at least 1")
    fmt = check_output(output, force=force, inputs=source)
    opened = open_source(source, column, id_column=id_column, chunk_rows=chunk_rows)  # checks columns
    total = count_rows(source, opened.format)
    info = resolve(client_for(uri), ref)  # an unknown model or alias: one line, before Ray starts
    started_here = not ray.is_initialized()
    if started_here:
        from lmforge.ray_connect import join_ray, start_local_ray

        if address == "local":
            start_local_ray()
        else:
            join_ray(address, "--ray")
    try:
        threads = serve.threads or 1
        if started_here and address == "local":
            check_actors_fit(actors, threads, ray.cluster_resources().get("CPU", 0))
        with ray_data_console_warnings_only():  # the progress bar is ours
            data = ray.data.DataContext.get_current()
            data.execution_options.preserve_order = True  # row positions and ids stay in file order
            wanted = [column] + ([opened.id_column] if opened.id_column else [])
            scored = _read(source, opened.format, wanted).map_batches(
                RayScorer,
                fn_constructor_args=(
                    f"{info.name}@{info.version}",
                    uri,
                    {
                        **serve.model_dump(),
                        "threads": threads,
                        "state_dir": str(Path(serve.state_dir).resolve()),
                    },
                    column,
                    opened.id_column,
                    batch_size,
                    max_new_tokens,
                ),
                batch_size=chunk_rows,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=threads,
            )
            tables = _numbered(scored, opened.id_column is None, FIRST_ROW[opened.format])
            return write_tables(tables, output, fmt, source, column, total=total, progress=progress)
    except ray.exceptions.RayError as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DataError(f"Ray Data failed: {first_line}", file=source) from None
    finally:
        if started_here:
            ray.shutdown()


def _numbered(scored: Any, positions: bool, first: int) -> Iterator[tuple[list[int], Any]]:
    """Ray's scored tables in file order, each with its file row numbers; without an id column
    the `row` column gets the rows' positions (the actors cannot know them)."""
    import pyarrow as pa

    position = 0
    for table in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
        size = table.num_rows
        if positions:
            table = table.set_column(0, "row", pa.array(range(position, position + size), pa.int64()))
        yield list(range(position + first, position + first + size)), table
        position += size


def check_actors_fit(actors: int, threads: int, cpus: float) -> None:
    """A local Ray never grows: an actor pool it cannot place would wait for ever."""
    if actors * threads > cpus:
        raise DataError(
            f"--ray-actors {actors} x {threads} thread(s) (serve.threads) need {actors * threads} CPUs; "
            f"the local Ray has {cpus:g}: lower --ray-actors, or join a larger cluster with --ray ADDRESS"
        )


def _read_args(reader: Any) -> dict[str, Any]:
    """The read tasks reserve no CPU. They only parse the file, and a read that asked for a CPU
    would wait for ever once the scoring actors hold every CPU (`--ray-actors 2` on 2 cores
    did). Ray 2.60 takes `num_cpus` by name (`ray_remote_args` is deprecated); older Rays only
    through `ray_remote_args`."""
    import inspect

    if "num_cpus" in inspect.signature(reader).parameters:
        return {"num_cpus": 0}
    return {"ray_remote_args": {"num_cpus": 0}}


def _read(source: Path, fmt: str, columns: list[str]) -> Any:
    """Every wanted column as text (Ray Data would otherwise type "007" as a number)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import ray

    if fmt == "parquet":
        return ray.data.read_parquet(str(source), columns=columns, **_read_args(ray.data.read_parquet))
    if fmt == "jsonl":
        return ray.data.read_json(str(source), lines=True, **_read_args(ray.data.read_json))
    delimiter = "\t" if source.suffix.lower() == ".tsv" else ","
    return ray.data.read_csv(
        str(source),
        parse_options=pcsv.ParseOptions(delimiter=delimiter),
        convert_options=pcsv.ConvertOptions(
            column_types={c: pa.string() for c in columns}, strings_can_be_null=False, include_columns=columns
        ),
        **_read_args(ray.data.read_csv),
    )
