"""Where trials run: in this process, or as Ray tasks on a local or remote Ray cluster.

Both executors take trial requests and hand back outcomes as they finish; the study
coordination (ask / tell) is the same code in `stages/tune.py` for both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Protocol

from lmforge.config import ExecutorConfig
from lmforge.tuning.objective import TrialOutcome, TrialRequest, run_trial


class Executor(Protocol):
    slots: int

    def submit(self, request: TrialRequest) -> None: ...

    def finished(self) -> Iterator[TrialOutcome]:
        """Wait for at least one submitted trial to finish; yield every finished one."""
        ...

    def close(self) -> None: ...


class LocalExecutor:
    """Runs each trial in this process when its outcome is asked for (one at a time)."""

    slots = 1

    def __init__(self) -> None:
        self.pending: list[TrialRequest] = []

    def submit(self, request: TrialRequest) -> None:
        self.pending.append(request)

    def finished(self) -> Iterator[TrialOutcome]:
        while self.pending:
            yield run_trial(self.pending.pop(0))

    def close(self) -> None:
        self.pending.clear()


class RayExecutor:
    """Each trial is a Ray task with `num_cpus` / `num_gpus` reserved for it."""

    def __init__(self, cfg: ExecutorConfig) -> None:
        import ray

        self.ray = ray
        self.started_here = connect_ray(cfg)
        cpus = float(ray.cluster_resources().get("CPU", 1))
        gpus = float(ray.cluster_resources().get("GPU", 0))
        fit = int(cpus // cfg.num_cpus)
        if cfg.num_gpus:
            fit = min(fit, int(gpus // cfg.num_gpus))
        if fit < 1:
            from lmforge.errors import ConfigError

            raise ConfigError(
                [
                    f"executor: a trial needs {cfg.num_cpus} CPU and {cfg.num_gpus} GPU but the Ray "
                    f"cluster has {cpus:g} CPU and {gpus:g} GPU"
                ]
            )
        self.slots = min(fit, cfg.max_concurrent or fit)
        self.threads = max(1, int(cfg.num_cpus))
        self.remote = ray.remote(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, max_retries=0)(run_trial)
        self.running: list[Any] = []

    def submit(self, request: TrialRequest) -> None:
        request.num_threads = self.threads  # torch would otherwise use every core of the node
        self.running.append(self.remote.remote(request))

    def finished(self) -> Iterator[TrialOutcome]:
        if not self.running:
            return
        done, self.running = self.ray.wait(self.running, num_returns=1)
        for ref in done:
            yield self.ray.get(ref)

    def close(self) -> None:
        for ref in self.running:
            self.ray.cancel(ref, force=True)
        self.running = []
        if self.started_here:
            self.ray.shutdown()


def connect_ray(cfg: ExecutorConfig) -> bool:
    """Join the cluster at `cfg.address`, or start a local Ray; True when started here (the
    caller shuts it down). A Ray already initialised in this process is used as it is."""
    import ray

    from lmforge.ray_connect import join_ray, start_local_ray

    if ray.is_initialized():
        return False
    # No address in the config: RAY_ADDRESS (set by `ray job submit` and KubeRay for a job's
    # entrypoint) names the cluster to join, as for any Ray program.
    if cfg.address:
        join_ray(cfg.address, "executor.address")
        return False
    if address := os.environ.get("RAY_ADDRESS"):
        join_ray(address, "executor.address is null and $RAY_ADDRESS")
        return False
    start_local_ray(num_cpus=max(1, os.cpu_count() or 1))
    return True


def make_executor(cfg: ExecutorConfig) -> Executor:
    if cfg.type == "ray":
        return RayExecutor(cfg)
    return LocalExecutor()
