"""What every train stage on Ray Train shares: the per-worker batch, a worker's start (threads,
the checkpoint Ray restored, the data from the object store) and end (rank 0 reports the fitted
model and its facts), and the driver that runs a `TorchTrainer` and fetches that model.

`ray_train.py` (classification) and `ray_causal.py` (generation, language modelling) only say
what their worker loop fits; a single training code path per task stays the one that runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.config import ExecutorConfig
from lmforge.errors import ConfigError

FINAL = "lmforge_final"  # the folder inside rank 0's last checkpoint
FACTS = "facts.json"
ADAPTER_SUFFIX = "-adapter"  # save_fitted keeps a LoRA adapter alone beside the model folder
TENSORBOARD = "tensorboard"  # the logs' folder in the scratch, the final checkpoint and the artifact


@dataclass
class RayFit:
    """What a train stage needs of a fit done on Ray (the `FitResult` fields it reads)."""

    model_dir: Path  # the fitted model folder, copied from the final checkpoint
    log_history: list[dict[str, Any]]
    train_loss: float
    train_seconds: float
    steps: int
    epoch: float
    best_metric: float | None
    best_checkpoint: str
    restarts: list[dict[str, Any]]
    parameters: int
    trainable_parameters: int
    settings: dict[str, Any]  # the resolved settings (global batch), with the per-worker batch
    decisions: list[Any]  # the recipe's Decisions, made on the driver
    device: str
    precision: str
    workers: int
    median_step_seconds: float | None = None  # rank 0's (monitor.step_timer)
    resumed: bool = False  # a worker group Ray restarted resumed from its last checkpoint
    extra: dict[str, Any] = field(default_factory=dict)  # what a task's loop adds to the facts


def worker_batch(batch_size: int, workers: int) -> int:
    """Each worker's share of the global batch (refused when it does not split evenly)."""
    if problem := batch_split_problem(batch_size, workers):
        raise ConfigError([problem])
    return batch_size // workers


def batch_split_problem(batch_size: int, workers: int) -> str | None:
    """Why `batch_size` cannot be split over `workers`, or None. The global batch is what the
    recipe's learning rate and step count were chosen for, so it must split evenly: rounding
    would silently train with another batch (and fewer rows than workers would leave one none)."""
    if workers < 1:
        return f"executor.train_workers: {workers}; Ray Train needs at least 1 worker"
    if batch_size % workers == 0:
        return None
    lower = batch_size - batch_size % workers
    fits = f"{lower} or {lower + workers}" if lower else str(workers)
    return (
        f"train.batch_size: {batch_size} does not split over executor.train_workers: {workers} "
        f"(each worker takes an equal share of the batch); set train.batch_size to a multiple "
        f"of {workers} (e.g. {fits})"
    )


@dataclass
class WorkerStart:
    """A worker's scratch folder, the checkpoint to resume from, and the data it trains on."""

    scratch: Path
    resume: Path | None
    payload: Any
    tensorboard: bool = False
    clock: Any = None  # under a budget: the clock schedule (ray_budget.py), one for all Trainers built
    progress: Any = None  # the driver's queue of progress ticks (`ProgressRelay`), rank 0 fills it

    def callbacks(self) -> list[Any]:
        """The Trainer callbacks of a worker: every checkpoint goes to Ray; rank 0 writes the
        TensorBoard logs the single-process stage writes (they travel in the final checkpoint)
        and sends its progress to the driver."""
        import ray.train
        from ray.train.huggingface.transformers import RayTrainReportCallback

        callbacks: list[Any] = [RayTrainReportCallback()]
        if self.clock is not None:
            callbacks.append(self.clock)
        rank0 = ray.train.get_context().get_world_rank() == 0
        if self.progress is not None and rank0:
            callbacks.append(progress_sender(self.progress))
        if self.tensorboard and rank0:
            from torch.utils.tensorboard import SummaryWriter
            from transformers.integrations import TensorBoardCallback

            callbacks.append(TensorBoardCallback(SummaryWriter(str(self.scratch / TENSORBOARD))))
        return callbacks


@contextmanager
def worker_start(config: dict[str, Any]) -> Iterator[WorkerStart]:
    """Inside a Ray Train worker: pin torch's threads to the CPUs reserved for it, fetch the
    data from the object store, and after a restart copy Ray's last checkpoint locally."""
    import ray
    import ray.train
    import torch
    from ray.train.huggingface.transformers import RayTrainReportCallback

    from lmforge.training.ray_budget import worker_clock

    torch.set_num_threads(max(1, int(config["threads"])))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    payload = ray.get(config["payload"])
    with tempfile.TemporaryDirectory(prefix="lmforge-ray-train-") as scratch:
        resume: Path | None = None
        restored = ray.train.get_checkpoint()
        if restored is not None:
            # A restarted group: every worker starts from the checkpoint Ray kept. A rerun of a
            # run whose driver died after the final report finds that report, which holds no
            # Trainer state: that fit starts over.
            local = Path(scratch) / "restored"
            shutil.copytree(restored.to_directory(), local)
            candidate = local / RayTrainReportCallback.CHECKPOINT_NAME
            resume = candidate if (candidate / "trainer_state.json").exists() else None
        clock = worker_clock(config["clock"]) if config.get("clock") else None
        yield WorkerStart(
            Path(scratch), resume, payload, bool(config.get("tensorboard")), clock, config.get("progress")
        )


# Rank 0 sends a tick at most this often (and at every evaluation): the driver's bar moves
# without a queue round trip per step.
TICK_SECONDS = 1.0


def progress_sender(queue: Any) -> Any:
    """A Trainer callback that puts rank 0's progress on the driver's queue: steps (with the
    total, epoch and last training loss) and validation results. A full or gone queue drops
    the tick: progress must never stop training."""
    import time

    from transformers import TrainerCallback

    class SendProgress(TrainerCallback):
        def __init__(self) -> None:
            self.sent = 0.0
            self.loss: float | None = None

        def _put(self, tick: dict[str, Any]) -> None:
            with contextlib.suppress(Exception):  # Full, or the driver's queue actor gone
                queue.put_nowait(tick)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._put({"completed": state.global_step, "total": state.max_steps})

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            now = time.monotonic()
            if now - self.sent < TICK_SECONDS and state.global_step < state.max_steps:
                return
            self.sent = now
            tick: dict[str, Any] = {"completed": state.global_step, "total": state.max_steps}
            tick["epoch"] = round(state.epoch or 0, 2)
            if self.loss is not None:
                tick["loss"] = round(self.loss, 4)
            self._put(tick)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            # The last step, whenever it came (a clock's end falls between two ticks).
            self.sent = 0.0
            self.on_step_end(args, state, control)

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any) -> None:
            shown = {
                k.removeprefix("eval_"): round(float(v), 4)
                for k, v in (metrics or {}).items()
                if k in ("eval_loss", "eval_accuracy", "eval_f1_macro")
            }
            self._put({"evaluated": shown, "epoch": round(state.epoch or 0, 2)})

    return SendProgress()


class ProgressRelay:
    """On the driver: a Ray queue the workers' rank 0 fills, drained by a thread that hands each
    tick to `sink` while `trainer.fit()` blocks. Ticks from a restarted worker group simply
    continue the bar from the step it resumed at."""

    def __init__(self, sink: Callable[[dict[str, Any]], None]) -> None:
        import threading

        from ray.util.queue import Queue

        self.sink = sink
        self.queue = Queue(maxsize=1000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="lmforge-ray-progress", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        from ray.util.queue import Empty

        while not self._stop.is_set():
            try:
                tick = self.queue.get(timeout=0.5)
            except Empty:
                continue
            except Exception:  # the queue actor gone (Ray shut down): stop quietly
                return
            self.sink(tick)

    def close(self) -> None:
        """Stop the thread, hand over what is left, and free the queue's actor."""
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(Exception):  # nothing left, or Ray already down
            for tick in self.queue.get_nowait_batch(self.queue.qsize()):
                self.sink(tick)
        with contextlib.suppress(Exception):
            self.queue.shutdown()


def report_final(fit: Any, start: WorkerStart, extra: dict[str, Any] | None = None) -> None:
    """The end of a worker: rank 0 saves the model as the single-process stage does
    (`save_fitted`: LoRA merged, the adapter alone beside it) with the facts the stage writes,
    in one last checkpoint; every rank reports (Ray Train V2 reports are collective)."""
    import ray.train

    from lmforge.training.fit import save_fitted
    from lmforge.training.stage_support import count_params, precision_name

    context = ray.train.get_context()
    checkpoint = None
    if context.get_world_rank() == 0:
        final = start.scratch / "final"
        save_fitted(fit, final / FINAL / "model")
        state = fit.trainer.state
        facts = {
            "log_history": state.log_history,
            "train_loss": fit.train_loss,
            "train_seconds": fit.train_seconds,
            "median_step_seconds": fit.median_step_seconds,
            "steps": int(state.global_step),
            "epoch": float(state.epoch or 0),
            "best_metric": fit.best_metric,
            "best_checkpoint": Path(state.best_model_checkpoint or "").name,
            "restarts": fit.restarts,
            "parameters": count_params(fit.model),
            "trainable_parameters": fit.trainable_parameters,
            "device": str(fit.trainer.args.device),
            "precision": precision_name(fit.trainer.args),
            "workers": context.get_world_size(),
            "resumed": start.resume is not None,
            "extra": extra or {},
        }
        (final / FINAL / FACTS).write_text(json.dumps(facts, default=str))
        if (start.scratch / TENSORBOARD).exists():
            shutil.copytree(start.scratch / TENSORBOARD, final / FINAL / TENSORBOARD)
        checkpoint = ray.train.Checkpoint.from_directory(str(final))
    ray.train.report({"lmforge_final": 1}, checkpoint=checkpoint)


def fit_on_ray(
    loop: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    payload: Any,
    executor: ExecutorConfig,
    storage: Path,
    name: str,
    out_model: Path,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run `loop` on `executor.train_workers` Ray Train workers; `payload` (the training data)
    travels through the object store. The model folder rank 0 reported lands in `out_model`,
    beside it a LoRA adapter (`out_model` + "-adapter") and, with `loop_config["tensorboard"]`,
    the TensorBoard logs (`tensorboard/`), as in one process; returns the facts it reported.
    `progress` gets rank 0's ticks (`progress_sender`) on the driver while the workers train."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from lmforge.tuning.executors import connect_ray

    workers = executor.train_workers
    started_here = connect_ray(executor)
    try:
        cpus = float(ray.cluster_resources().get("CPU", 0))
        needed = workers * executor.cpus_per_worker
        if needed > cpus:
            raise ConfigError(
                [
                    f"executor.train_workers: {workers} workers x {executor.cpus_per_worker:g} "
                    f"CPU need {needed:g} CPU; the Ray cluster has {cpus:g}"
                ]
            )
        relay = ProgressRelay(progress) if progress is not None else None
        try:
            trainer = TorchTrainer(
                loop,
                train_loop_config={
                    **loop_config,
                    "payload": ray.put(payload),
                    "threads": executor.cpus_per_worker,
                    "progress": relay.queue if relay is not None else None,
                },
                scaling_config=ScalingConfig(
                    num_workers=workers,
                    use_gpu=executor.use_gpu,
                    resources_per_worker={"CPU": executor.cpus_per_worker},
                ),
                run_config=RunConfig(
                    name=name,
                    storage_path=executor.storage_path or str(storage),
                    failure_config=FailureConfig(max_failures=executor.max_failures),
                    checkpoint_config=CheckpointConfig(num_to_keep=3),
                ),
            )
            result = trainer.fit()
        finally:
            if relay is not None:
                relay.close()
        if result.checkpoint is None:
            raise RuntimeError("Ray Train ended without the final checkpoint of rank 0")
        with result.checkpoint.as_directory() as folder:
            final = Path(folder) / FINAL
            facts: dict[str, Any] = json.loads((final / FACTS).read_text())
            _replace(final / "model", out_model)
            _replace(final / ("model" + ADAPTER_SUFFIX), out_model.with_name(out_model.name + ADAPTER_SUFFIX))
            _replace(final / TENSORBOARD, out_model.with_name(TENSORBOARD))
    finally:
        if started_here:
            ray.shutdown()
    return facts


def _replace(source: Path, target: Path) -> None:
    # A rerun of the stage writes into the same output folder: no file of an earlier fit stays.
    if target.exists():
        shutil.rmtree(target)
    if source.exists():
        shutil.copytree(source, target)


def ray_fit(facts: dict[str, Any], out_model: Path, settings: dict[str, Any], decisions: list[Any]) -> RayFit:
    """The RayFit of the facts rank 0 reported and the settings resolved on the driver."""
    return RayFit(
        model_dir=out_model,
        log_history=facts["log_history"],
        train_loss=float(facts["train_loss"]),
        train_seconds=float(facts["train_seconds"]),
        steps=int(facts["steps"]),
        epoch=float(facts["epoch"]),
        best_metric=facts["best_metric"],
        best_checkpoint=facts["best_checkpoint"],
        restarts=facts["restarts"],
        parameters=int(facts["parameters"]),
        trainable_parameters=int(facts["trainable_parameters"]),
        settings=settings,
        decisions=decisions,
        device=facts["device"],
        precision=facts["precision"],
        workers=int(facts["workers"]),
        median_step_seconds=facts.get("median_step_seconds"),
        resumed=bool(facts.get("resumed")),
        extra=dict(facts.get("extra") or {}),
    )
