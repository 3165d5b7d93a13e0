"""A budget on Ray Train: workers lay the learning rate over the seconds left and stop together."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch.multiprocessing as mp
from transformers import TrainerCallback  # noqa: F401  (imported before the fork, once for both)

from lmforge.config import TrainConfig
from lmforge.errors import ConfigError
from lmforge.pipeline.budget import RunBudget
from lmforge.training.clock_schedule import clock_schedule
from lmforge.training.ray_budget import RAY_FIXED_SECONDS, largest_over_workers, plan_on_ray
from tests.conftest import make_rows


def test_without_a_process_group_a_worker_keeps_its_own_progress() -> None:
    assert largest_over_workers(0.37) == 0.37


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, port: int, slow_seconds: list[float], out: Path) -> None:
    """One gloo worker stepping a clock schedule whose clock runs at its own pace."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    now = [0.0]
    schedule = clock_schedule(
        end=100.0, max_steps=1000, warmup_steps=0, shape="linear",
        clock=lambda: now[0], agree=largest_over_workers,
    )  # fmt: skip
    state = SimpleNamespace(global_step=0, max_steps=1000)
    control = SimpleNamespace(should_training_stop=False, should_evaluate=False, should_save=False)
    schedule.on_train_begin(None, state, control)
    evaluated = []
    while not control.should_training_stop and state.global_step < 1000:
        now[0] += slow_seconds[rank]
        state.global_step += 1
        control.should_evaluate = False
        schedule.on_step_end(None, state, control)
        if control.should_evaluate:
            evaluated.append(state.global_step)
    (out / f"rank-{rank}.json").write_text(json.dumps([state.global_step, *evaluated]))
    dist.destroy_process_group()


def test_two_workers_with_different_clocks_evaluate_and_stop_at_the_same_steps(tmp_path: Path) -> None:
    """Rank 1's clock runs 4x faster than rank 0's: alone it would stop at step 10 and rank 0
    at step 40, and rank 0 would wait in its next all-reduce forever. Agreed, both stop at 10."""
    # fork: the children have torch and transformers imported already (spawn re-imports them).
    mp.start_processes(_worker, args=(_free_port(), [2.5, 10.0], tmp_path), nprocs=2, start_method="fork")
    seen = [json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    assert seen[0] == seen[1]
    assert seen[0][0] == 10  # the faster clock's end: 100 s at 10 s per step
    assert seen[0][1:] == [4, 7, 10]  # the rungs at a third and two thirds, and the end


def _ctx(budget: RunBudget, base_dir: Path) -> SimpleNamespace:
    logged: list[str] = []
    return SimpleNamespace(budget=budget, config=SimpleNamespace(base_dir=base_dir), log=logged.append)


def _split() -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    rows = pd.DataFrame(make_rows(per_class=40), columns=["text", "label"])
    return rows.iloc[:100], rows.iloc[100:], sorted(rows["label"].unique())


def test_the_workers_get_the_recipes_steps_a_constant_trainer_schedule_and_a_wall_clock_end(
    tiny_model: Path, tmp_path: Path
) -> None:
    train, validation, labels = _split()
    budget = RunBudget(600.0, ["train", "evaluate", "register"], started=time.monotonic())
    before = time.time()
    cfg, clock = plan_on_ray(
        _ctx(budget, tmp_path), str(tiny_model), labels, train, validation, TrainConfig()
    )
    assert cfg.lr_scheduler == "constant_with_warmup" and cfg.warmup_ratio == 0.0
    assert cfg.eval_steps == cfg.max_steps + 1  # evaluations come from the clock's rungs
    assert clock["max_steps"] == cfg.max_steps >= 1
    assert clock["shape"] == "linear"  # the recipe's decay, applied by the clock
    left = budget.stage_deadline("train", "transformer") - time.monotonic()
    assert before < clock["end"] <= time.time() + left - RAY_FIXED_SECONDS  # a time.time(), Ray's start paid
    assert budget.decisions[-1]["decision"] == "Ray Train ends by the clock"


def test_a_budget_that_leaves_no_time_after_rays_start_names_what_would_fit(
    tiny_model: Path, tmp_path: Path
) -> None:
    train, validation, labels = _split()
    budget = RunBudget(120.0, ["train", "evaluate", "register"], started=time.monotonic() - 100)
    with pytest.raises(ConfigError) as caught:
        plan_on_ray(_ctx(budget, tmp_path), str(tiny_model), labels, train, validation, TrainConfig())
    message = str(caught.value)
    assert "budget.minutes: 2 leaves" in message and "executor.train_workers: 0" in message
    assert re.search(r"set budget.minutes: \d+ or more", message)
