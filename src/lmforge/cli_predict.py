"""`lmforge predict MODEL INPUT --out OUTPUT`: batch prediction with a registered model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from lmforge.cli_support import console, err_console, errors


def predict(
    ref: str = typer.Argument(..., help="Registered model: NAME@champion, NAME@challenger or NAME@3."),
    source: Path = typer.Argument(..., help="A CSV, TSV, JSONL or Parquet file of texts."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file: .parquet, .csv or .jsonl."),
    column: str = typer.Option("text", "--column", help="The input's text column."),
    id_column: str | None = typer.Option(
        None, "--id-column", help="Column copied as the row id (default: `id` if present, else row numbers)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace OUTPUT if it exists."),
    runtime: str | None = typer.Option(None, "--runtime", help="auto | onnx | torch (classification)."),
    threads: int | None = typer.Option(None, "--threads", help="Intra-op threads (default: all cores)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Texts per model call."),
    chunk_rows: int = typer.Option(1024, "--chunk-rows", help="Rows read, scored and written at a time."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Generation models: answer length."),
    ray: str | None = typer.Option(
        None, "--ray", help="Run on Ray Data: `local` starts a local cluster, else a Ray address."
    ),
    ray_actors: int = typer.Option(1, "--ray-actors", help="With --ray: model replicas (actors)."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Read the serve: and tracking: sections."
    ),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow registry (default: the config's)."
    ),
) -> None:
    """Score every row of a data file with a registered model, streamed in chunks (ONNX when exported)."""
    from lmforge.config import ServeConfig, load_config
    from lmforge.predict import predict_file
    from lmforge.predict.writer import check_output
    from lmforge.registry import default_uri
    from lmforge.serve.state import ModelHolder
    from lmforge.state_dir import StateDir

    with errors("no output was written; an existing --out is unchanged"):
        check_output(out, force=force, inputs=source)  # before minutes of model loading
        cfg_file = load_config(config) if config else None
        base = cfg_file.serve if cfg_file else ServeConfig()
        overrides = {"runtime": runtime, "threads": threads}
        cfg = ServeConfig(**{**base.model_dump(), **{k: v for k, v in overrides.items() if v is not None}})
        if cfg_file and tracking_uri is None:
            from lmforge.registry import tracking_uri as configured_uri

            tracking_uri = configured_uri(cfg_file)
        uri = tracking_uri or default_uri()
        options: dict[str, Any] = {
            "column": column,
            "id_column": id_column,
            "chunk_rows": chunk_rows,
            "batch_size": batch_size,
            "force": force,
            "max_new_tokens": max_new_tokens,
        }
        if ray:
            from lmforge.predict.on_ray import predict_on_ray

            err_console.print(f"predicting with [bold]{ref}[/] on Ray ({ray}, {ray_actors} actors)")
            with _progress() as tick:
                result = predict_on_ray(
                    ref, uri, cfg, source, out, address=ray, actors=ray_actors, progress=tick, **options
                )
        else:
            loaded = ModelHolder(ref, uri, cfg, StateDir.of(cfg)).load_now()
            predictor = loaded.predictor
            err_console.print(
                f"predicting with [bold]{loaded.name}[/] version {loaded.version} "
                f"({predictor.runtime}: {predictor.file})",
                soft_wrap=True,
            )
            with _progress() as tick:
                result = predict_file(predictor, source, out, progress=tick, **options)
        rate = result.scored / result.seconds if result.seconds else 0.0
        console.print(
            f"{result.rows:,} rows -> {out}  ({result.scored:,} scored, {rate:,.0f} texts/s)",
            soft_wrap=True,
            markup=False,
        )
        if line := result.bad_line(source):
            err_console.print(Text(line, style="yellow"), soft_wrap=True)  # a path may hold [brackets]


@contextmanager
def _progress() -> Iterator[Callable[[int, int | None], None]]:
    """The project's progress rendering (`console.RichRenderer`): a bar in a terminal, a line
    every 5% of the rows elsewhere."""
    from lmforge.console import RichRenderer
    from lmforge.pipeline.events import Event

    with RichRenderer(err_console) as renderer:
        renderer(Event("stage_start", "predict"))
        renderer(Event("progress_start", "predict", "rows"))

        def tick(done: int, total: int | None) -> None:
            renderer(Event("progress", "predict", "rows", {"completed": done, "total": total}))

        try:
            yield tick
        finally:
            renderer(Event("progress_end", "predict", "rows"))
