"""Runs the stage graph: cache lookups, atomic artifact folders, resume, events."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import lmforge
from lmforge.config import Config
from lmforge.errors import ConfigError, DataError
from lmforge.owner import owner
from lmforge.pipeline.artifacts import (
    MANIFEST,
    Artifact,
    ArtifactWriter,
    combined_hash,
    file_sha256,
    folder_files,
    link_copy,
    write_json_atomic,
)
from lmforge.pipeline.budget import RunBudget, budget_config
from lmforge.pipeline.context import StageConfig, StageContext, StageResult
from lmforge.pipeline.events import EventBus, LogFileSink
from lmforge.pipeline.graph import StageSpec, dependents, stages_for
from lmforge.pipeline.runs import RunRecord, new_run_id, settle_killed
from lmforge.pipeline.stagelock import stage_lock

_VERSIONED = ("torch", "transformers", "scikit-learn", "pandas", "mlflow", "accelerate")


@dataclass
class RunResult:
    """What `run_pipeline` returns: where the run lives and each stage's artifact."""

    run_id: str
    run_dir: Path
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    cached: dict[str, bool] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    budget: RunBudget | None = None


def run_pipeline(
    config: Config,
    *,
    force: Iterable[str] = (),
    events: EventBus | None = None,
    config_file: str | None = None,
    until: str | None = None,
) -> RunResult:
    """Run every stage of `config`'s task, reusing cached stages.

    `force` names stages to rerun regardless of the cache; their dependents rerun too.
    `until` stops after the named stage.
    """
    started_at = time.time()  # a budget counts from here: checks, data stages and all
    events = events or EventBus()
    stages = stages_for(config)
    names = [s.name for s in stages]
    for option, asked in (("--force", list(force)), ("--until", [until] if until else [])):
        unknown = sorted(set(asked) - set(names))
        if unknown:
            raise ConfigError([f"{option}: unknown stage {', '.join(unknown)}; stages: {', '.join(names)}"])
    _check_models(config)
    _check_budget(config)
    if until is not None:
        stages = stages[: names.index(until) + 1]
    forced = dependents(stages, set(force))

    runs_dir = config.resolve_path(config.output_dir)
    if runs_dir.is_dir():
        settle_killed(runs_dir)  # earlier runs here that were killed stop reading "running"
    run_id = new_run_id()
    run_dir = runs_dir / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    log_sink = LogFileSink(run_dir / "run.log")
    events.subscribe(log_sink)
    record = RunRecord.create(run_dir, config.project_name, config_file)
    result = RunResult(run_id, run_dir)
    budget = RunBudget.from_config(config, [s.name for s in stages])
    if budget is not None:
        # The budget counts from the start of the process (the user's clock starts at the
        # command, imports included), or of this call when the process is older (a library use).
        begun = _process_started(started_at)
        budget.started = time.monotonic() - (time.time() - begun)
        from lmforge.pipeline.budget import estimate_size
        from lmforge.pipeline.spec import data_files

        rows, budget.mean_chars = estimate_size(data_files(config))
        budget.rows["train"] = rows
        budget.revise()
    result.budget = budget
    try:
        events.emit(
            "run_start",
            None,
            run_id,
            run_dir=str(run_dir),
            stages=[s.name for s in stages],
            budget_seconds=config.budget.seconds,
            started_at=started_at,
        )
        for spec in stages:
            if budget is not None:
                config = budget_config(budget, spec.name, config, events)
            artifact, cached, seconds = _run_stage(
                spec, config, result, runs_dir, run_dir, events, record, spec.name in forced, budget
            )
            result.artifacts[spec.name] = artifact
            result.cached[spec.name] = cached
            result.durations[spec.name] = seconds
            if budget is not None:
                budget.finished(
                    spec.name,
                    seconds,
                    artifact.manifest.get("rows", {}),
                    cached,
                    artifact.summary.get("text_chars"),
                    computed=artifact.manifest.get("seconds"),
                    skipped=bool(artifact.summary.get("skipped")),
                )
                write_json_atomic(run_dir / "budget.json", budget.to_json())
        record.set_metrics(_headline_metrics(result))
        record.finish("succeeded")
        events.emit("run_end", None, run_id, status="succeeded", run_dir=str(run_dir))
        return result
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        record.finish(status, error=str(exc) or type(exc).__name__)
        events.emit("run_end", None, run_id, status=status, run_dir=str(run_dir))
        raise
    finally:
        events.unsubscribe(log_sink)


def _process_started(called_at: float) -> float:
    import psutil  # a dependency of accelerate and peft

    created = psutil.Process().create_time()
    return created if called_at - created < 60 else called_at


def _check_budget(config: Config) -> None:
    """A budget this data cannot fit fails now, in one line, naming what would fit."""
    import math

    from lmforge.pipeline.budget import estimate_size, minimum_seconds
    from lmforge.pipeline.spec import data_files

    seconds = config.budget.seconds
    if seconds is None:
        return
    rows, mean_bytes = estimate_size(data_files(config))
    task = config.task_def
    if task.uses_labels:
        needed = minimum_seconds(rows, mean_bytes)
        parts = "the data stages, one linear model, evaluate, export and register"
    else:
        needed = minimum_seconds(
            rows, mean_bytes, causal_answers=0 if task.raw_text else config.evaluate.generation_rows
        )
        parts = "the data stages, scoring the base model, 30 s of fine-tuning, evaluate and register"
    if seconds < needed:
        raise ConfigError(
            [
                f"budget.minutes: {seconds / 60:g} is below what {rows:,} rows need "
                f"(~{needed / 60:.1f} min: {parts}); set budget.minutes: {math.ceil(needed / 60)} or more"
            ]
        )


def _check_models(config: Config) -> None:
    """A wrong `model` fails now, not after the data stages have run (minutes on big data)."""
    from lmforge.models.resolve import check_model

    if config.selects_model:
        references = config.model if isinstance(config.model, list) else []  # `auto`: the zoo
    else:
        references = [config.model_name]
    for reference in references:
        check_model(reference, config.base_dir)


def _run_stage(
    spec: StageSpec,
    config: Config,
    result: RunResult,
    runs_dir: Path,
    run_dir: Path,
    events: EventBus,
    record: RunRecord,
    forced: bool,
    budget: RunBudget | None = None,
) -> tuple[Artifact, bool, float]:
    inputs = {name: result.artifacts[name] for name in spec.inputs}
    key = cache_key(spec, config, inputs)
    reusable = spec.cacheable and not forced
    if reusable and (hit := _reuse(spec, config, key, runs_dir, run_dir, events, record)):
        return hit
    work_dir = runs_dir / ".work" / f"{spec.name}-{key[:16]}"

    def waiting(holder: str) -> None:
        who = f" ({holder})" if holder else ""
        events.emit("log", spec.name, f"waiting for another run computing {spec.name}{who}")

    # Another run of this config in this folder may be computing this very key, in the same
    # scratch folder: wait for it, then reuse what it published.
    with stage_lock(
        work_dir.with_name(work_dir.name + ".lock"), f"run {run_dir.name}, pid {owner()}", waiting
    ):
        if reusable and (hit := _reuse(spec, config, key, runs_dir, run_dir, events, record)):
            return hit
        return _compute(spec, config, key, inputs, work_dir, runs_dir, run_dir, events, record, budget)


def _reuse(
    spec: StageSpec,
    config: Config,
    key: str,
    runs_dir: Path,
    run_dir: Path,
    events: EventBus,
    record: RunRecord,
) -> tuple[Artifact, bool, float] | None:
    """Place the cached artifact of `key` into this run, if there is a valid one."""
    started = time.perf_counter()
    hit = _cache_lookup(runs_dir, spec.name, key)
    if hit is None or (spec.still_valid is not None and not spec.still_valid(config)):
        return None
    final_dir = run_dir / spec.name
    _place(hit.folder, final_dir, link=True)
    seconds = time.perf_counter() - started
    record.stage(spec.name, status="cached", key=key, seconds=seconds, reused_from=str(hit.folder))
    events.emit("stage_cached", spec.name, "reused", reused_from=hit.manifest.get("run_id"))
    return Artifact.load(final_dir), True, seconds


def _compute(
    spec: StageSpec,
    config: Config,
    key: str,
    inputs: dict[str, Artifact],
    work_dir: Path,
    runs_dir: Path,
    run_dir: Path,
    events: EventBus,
    record: RunRecord,
    budget: RunBudget | None = None,
) -> tuple[Artifact, bool, float]:
    """Run the stage in its scratch folder, then publish its artifact (and cache entry)."""
    final_dir = run_dir / spec.name
    started = time.perf_counter()
    events.emit("stage_start", spec.name)
    record.stage(spec.name, status="running", key=key)
    out_dir = work_dir / "out"
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a half-written output from a killed run; scratch survives
    ctx = StageContext(
        run_id=run_dir.name,
        stage=spec.name,
        # The stage sees only what its key covers (plus what it reads to run, not to decide).
        config=cast(Config, StageConfig(config, spec.name, (*spec.sections, *spec.unkeyed))),
        out=ArtifactWriter(out_dir),
        work_dir=work_dir,
        run_dir=run_dir,
        events=events,
        budget=budget,
    )
    section = config.section_model(spec.sections[0])
    try:
        stage_result = spec.function()(ctx, section, inputs)
    except BaseException as exc:
        is_user = isinstance(exc, (DataError, ConfigError)) or getattr(exc, "headline", None)
        record.stage(spec.name, status="failed", error=str(exc))
        events.emit(
            "stage_failed",
            spec.name,
            str(exc),
            **({} if is_user else {"traceback": traceback.format_exc()}),
        )
        raise
    seconds = time.perf_counter() - started
    manifest = _manifest(spec, config, key, inputs, stage_result, out_dir, run_dir.name, seconds)
    write_json_atomic(out_dir / MANIFEST, manifest)
    _place(out_dir, final_dir, link=False)
    shutil.rmtree(work_dir, ignore_errors=True)
    if spec.cacheable:
        _cache_store(runs_dir, spec.name, key, final_dir)
    record.stage(
        spec.name, status="done", seconds=seconds, rows=stage_result.rows, metrics=stage_result.metrics
    )
    events.emit(
        "stage_done",
        spec.name,
        "",
        seconds=round(seconds, 2),
        rows=stage_result.rows,
        metrics=stage_result.metrics,
    )
    return Artifact(final_dir, manifest), False, seconds


def cache_key(spec: StageSpec, config: Config, inputs: dict[str, Artifact]) -> str:
    """sha256 of: stage name, its config sections, its inputs' content hashes, the
    content of the user files it reads, its extra fingerprint, and the lmforge version."""
    material: dict[str, Any] = {
        "stage": spec.name,
        "sections": {name: config.section(name) for name in spec.sections},
        "inputs": {name: art.content_hash for name, art in sorted(inputs.items())},
        "lmforge": lmforge.__version__,
    }
    if spec.files is not None:
        material["files"] = {str(p): _user_file_hash(p) for p in spec.files(config)}
    if spec.fingerprint is not None:
        material["fingerprint"] = spec.fingerprint(config)
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _user_file_hash(path: Path) -> str:
    from lmforge.datafiles import check_path

    check_path(path)
    try:
        return file_sha256(path)
    except OSError as exc:  # unreadable (permissions, a device): the ingest stage would fail alike
        raise DataError(f"cannot read the file: {exc.strerror or exc}", file=path) from None


def _cache_lookup(runs_dir: Path, stage: str, key: str) -> Artifact | None:
    pointer = runs_dir / ".cache" / f"{stage}-{key}"
    if not pointer.exists():
        return None
    folder = runs_dir / pointer.read_text(encoding="utf-8").strip()
    if not (folder / MANIFEST).exists():
        return None  # the run folder was deleted: recompute
    artifact = Artifact.load(folder)
    return artifact if artifact.manifest.get("cache_key") == key else None


def _cache_store(runs_dir: Path, stage: str, key: str, folder: Path) -> None:
    cache_dir = runs_dir / ".cache"
    cache_dir.mkdir(exist_ok=True)
    pointer = cache_dir / f"{stage}-{key}"
    tmp = pointer.with_name(pointer.name + f".tmp-{os.getpid()}")
    # Relative to runs/, so a moved or copied project folder keeps its cache.
    tmp.write_text(folder.relative_to(runs_dir).as_posix(), encoding="utf-8")
    os.replace(tmp, pointer)


def _place(src: Path, final_dir: Path, *, link: bool) -> None:
    """Move (or hard-link copy) a folder into place under a temp name, then rename."""
    tmp = final_dir.with_name(f".{final_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    if link:
        link_copy(src, tmp)
    else:
        shutil.move(str(src), str(tmp))
    os.replace(tmp, final_dir)


def _manifest(
    spec: StageSpec,
    config: Config,
    key: str,
    inputs: dict[str, Artifact],
    stage_result: StageResult,
    out_dir: Path,
    run_id: str,
    seconds: float,
) -> dict[str, Any]:
    files = folder_files(out_dir)
    return {
        "stage": spec.name,
        "run_id": run_id,
        "cache_key": key,
        "content_hash": combined_hash(files),
        "files": files,
        "inputs": {name: art.content_hash for name, art in inputs.items()},
        "config": {name: config.section(name) for name in spec.sections},
        "rows": stage_result.rows,
        "metrics": stage_result.metrics,
        "summary": stage_result.summary,
        "seconds": round(seconds, 3),
        "finished_at": time.time(),
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    versions = {"lmforge": lmforge.__version__, "python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _headline_metrics(result: RunResult) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    evaluate = result.artifacts.get("evaluate")
    if evaluate is not None:
        metrics.update({k: v for k, v in evaluate.metrics.items() if not k.startswith("baseline")})
    baseline = result.artifacts.get("baseline")
    if baseline is not None and "tfidf_f1_macro" in baseline.metrics:
        metrics["baseline_f1_macro"] = baseline.metrics["tfidf_f1_macro"]
    register = result.artifacts.get("register")
    if register is not None and register.summary.get("version"):
        metrics["model_version"] = register.summary["version"]
    return metrics
