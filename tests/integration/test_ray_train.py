"""The train stage on Ray Train, on a two-node Ray cluster started on 127.0.0.1 by the test
(`ray start --head` and a second `ray start --address`, with token authentication, as Ray
starts a head whenever a token is at hand), stopped at the end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lmforge.config import ExecutorConfig, TrainConfig, load_config
from lmforge.pipeline.runner import run_pipeline
from lmforge.ray_connect import join_ray
from tests.conftest import make_rows

pytest.importorskip("ray")
pytestmark = pytest.mark.integration

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _node(*args: str) -> subprocess.Popen[bytes]:
    # --block keeps the node in the foreground: stopping this process stops that node only,
    # never another Ray on the machine (as `ray stop` would).
    env = {**os.environ, "RAY_AUTH_MODE": "token"}  # the token: ~/.ray/auth_token
    return subprocess.Popen(
        [RAY, "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop(node: subprocess.Popen[bytes]) -> None:
    if node.poll() is None:
        os.killpg(node.pid, signal.SIGTERM)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait(timeout=10)


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[str]:
    """A head node and a worker node, one CPU each: two Ray Train workers land on two nodes."""
    import ray

    # The machine's token (written if missing; never replaced: another Ray may be using it).
    subprocess.run([RAY, "get-auth-token", "--generate"], check=True, capture_output=True, timeout=60)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    nodes = [_node("--head", f"--port={port}", "--include-dashboard=false")]
    try:
        deadline = time.monotonic() + 90
        while True:  # the head's GCS port answers, then the second node may join
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or nodes[0].poll() is not None:
                    pytest.fail("the Ray head node did not start")
                time.sleep(0.5)
        nodes.append(_node(f"--address={address}"))
        join_ray(address, "executor.address")  # token mode: the token file is at hand
        while ray.cluster_resources().get("CPU", 0) < 2:
            if time.monotonic() > deadline:
                pytest.fail("the second Ray node did not join")
            time.sleep(0.5)
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for node in reversed(nodes):
            _stop(node)
        # `ray start --head` names itself the machine's current cluster; a later ray.init()
        # without an address would try to join the stopped one.
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if current.exists() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()


def _config(config_dict: dict[str, Any], executor: dict[str, Any] | None) -> Any:
    config_dict["tracking"]["enabled"] = False
    config_dict["train"].update({"epochs": 6, "eval_steps": 6})
    if executor:
        config_dict["executor"] = executor
    return load_config(data=config_dict)


def test_two_workers_leave_the_single_process_artifact_and_score_alike(
    two_nodes: str, config_dict: dict[str, Any], tmp_path: Path
) -> None:
    single = run_pipeline(_config(dict(config_dict), None), until="evaluate")
    on_ray = dict(config_dict, output_dir=str(tmp_path / "ray-runs"))
    ray_run = run_pipeline(
        _config(on_ray, {"type": "ray", "address": two_nodes, "train_workers": 2}), until="report"
    )
    local_train, ray_train = single.artifacts["train"], ray_run.artifacts["train"]
    # The same artifact: evaluate, export and register read these and nothing else.
    for name in ("history.json", "hyperparameters.json", "recipe.json", "restarts.json"):
        assert ray_train.path(name).exists(), name
    assert sorted(p.name for p in ray_train.path("model").iterdir()) == sorted(
        p.name for p in local_train.path("model").iterdir()
    )
    assert ray_train.summary["ray_train"] == {
        "workers": 2,
        "cpus_per_worker": 1,
        "backend": "gloo",
        "resumed_after_a_failure": False,
    }
    report = ray_run.artifacts["report"].path("report.html").read_text(encoding="utf-8")
    assert "on Ray Train: 2 worker(s) x 1 CPU, gloo" in report  # where the model was made
    # Both time their steps (rank 0's on Ray), the figure that compares the two.
    assert ray_train.metrics["median_step_seconds"] > 0 and local_train.metrics["median_step_seconds"] > 0
    hyper = ray_train.json("hyperparameters")
    assert hyper["batch_size"] == 8 and hyper["batch_size_per_worker"] == 4  # the same global batch
    # The workers' progress is the stage's own: a training bar and a line per validation pass.
    log = (ray_run.run_dir / "run.log").read_text()
    assert "progress_start [train] training" in log and "[train] epoch" in log and "validation" in log
    local_acc = single.artifacts["evaluate"].metrics["accuracy"]
    ray_acc = ray_run.artifacts["evaluate"].metrics["accuracy"]
    # Within noise on a 24-row test split: both learn the topics.
    assert ray_acc >= 0.75 and abs(ray_acc - local_acc) <= 0.2, (local_acc, ray_acc)


def _busy_train_workers() -> list[int]:
    """Ray Train worker processes now training (an idle one left by an earlier run is not)."""
    import psutil

    workers = [
        process
        for process in psutil.process_iter(["pid", "cmdline"])
        if "RayTrainWorker" in " ".join(process.info.get("cmdline") or [])
    ]
    for process in workers:
        process.cpu_percent(None)
    time.sleep(0.5)
    busy = []
    for process in workers:
        try:
            if process.cpu_percent(None) > 10:
                busy.append(process.pid)
        except psutil.NoSuchProcess:
            pass
    return busy


def test_a_killed_worker_restarts_from_the_last_checkpoint_and_the_run_finishes(
    two_nodes: str, tiny_model: Path, tmp_path: Path
) -> None:
    from lmforge.training.ray_train import fit_classifier_on_ray

    frame = pd.DataFrame(make_rows(per_class=40), columns=["text", "label"])
    labels = sorted(frame["label"].unique())
    cfg = TrainConfig(
        pooling="mean",
        epochs=20,
        batch_size=8,
        learning_rate=5e-3,
        max_length=16,
        eval_steps=25,
        early_stopping_patience=None,
    )
    storage = tmp_path / "storage"
    killed: list[int] = []
    killer = _killer(storage, killed)
    fit = fit_classifier_on_ray(
        str(tiny_model),
        tmp_path,
        labels,
        frame,
        frame.head(40),
        cfg,
        ExecutorConfig(type="ray", address=two_nodes, train_workers=2, max_failures=2),
        storage,
        "killed",
        tmp_path / "model",
    )
    killer.join(timeout=5)
    assert killed, "no worker was killed: the run ended before its first checkpoint"
    assert fit.resumed  # resumed from the checkpoint Ray kept, not from the start
    assert fit.steps == 20 * 160 // 8  # every planned step ran (20 epochs x 20 global batches)
    assert (tmp_path / "model" / "config.json").exists()
    shutil.rmtree(storage, ignore_errors=True)


def _killer(storage: Path, killed: list[int]) -> threading.Thread:
    """A thread that SIGKILLs one busy Ray Train worker once two checkpoints are on `storage`
    (the first is then surely committed; the second may be in flight), its pid in `killed`."""

    def kill_one_after_a_checkpoint() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            if len(list(storage.glob("*/checkpoint_2*"))) >= 2 and (workers := _busy_train_workers()):
                os.kill(workers[-1], signal.SIGKILL)
                killed.append(workers[-1])
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_after_a_checkpoint, daemon=True)
    killer.start()
    return killer


def test_a_killed_worker_of_a_causal_lora_fit_resumes_and_the_run_finishes(
    two_nodes: str, tiny_llama: Path, tmp_path: Path
) -> None:
    # The causal path resumes a LoRA fit (the adapter and its optimizer state in the
    # checkpoint Ray kept), not only the classifier's full fine-tune.
    from lmforge.training.causal_fit import prepare_causal
    from lmforge.training.ray_causal import fit_causal_lm_on_ray
    from tests.conftest import make_instructions, messages_frame

    rows = make_instructions()
    frame = messages_frame(rows)
    cfg = TrainConfig(
        method="lora",
        epochs=20,
        batch_size=8,
        learning_rate=5e-3,
        max_length=32,
        eval_steps=10,
        early_stopping_patience=None,
    )
    data = prepare_causal(str(tiny_llama), tmp_path, cfg, frame, frame.head(16), lm=False)
    storage = tmp_path / "storage"
    killed: list[int] = []
    killer = _killer(storage, killed)
    fit = fit_causal_lm_on_ray(
        str(tiny_llama),
        tmp_path,
        data,
        ExecutorConfig(type="ray", address=two_nodes, train_workers=2, max_failures=2),
        storage,
        "killed-causal",
        tmp_path / "model",
    )
    killer.join(timeout=5)
    assert killed, "no worker was killed: the run ended before its first checkpoint"
    assert fit.resumed
    assert fit.steps == 20 * -(-len(rows) // 8)  # every planned step ran
    assert (tmp_path / "model" / "config.json").exists()
    shutil.rmtree(storage, ignore_errors=True)


def _tree(folder: Path) -> list[str]:
    """The artifact's files, TensorBoard's event files by folder (their names hold a time)."""
    return sorted(
        {
            str(p.relative_to(folder)) if p.parent.name != "tensorboard" else "tensorboard/*"
            for p in folder.rglob("*")
            if p.is_file()
        }
    )


def test_causal_lora_on_two_workers_leaves_the_single_process_artifact(
    two_nodes: str, tiny_llama: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.conftest import make_instructions
    from tests.unit.test_generation_pipeline import gen_config, write_jsonl

    data = write_jsonl(tmp_path / "data.jsonl", make_instructions())

    def config(folder: str, executor: dict[str, Any] | None) -> Any:
        config_dict = gen_config(tmp_path / folder, data, tiny_llama, method="lora", epochs=2, eval_steps=4)
        config_dict["tracking"].update({"enabled": False, "tensorboard": True})
        if executor:
            config_dict["executor"] = executor
        return load_config(data=config_dict)

    single = run_pipeline(config("local", None), until="train").artifacts["train"]
    on_ray = run_pipeline(
        config("ray", {"type": "ray", "address": two_nodes, "train_workers": 2}), until="train"
    ).artifacts["train"]
    # The same files (model/, the LoRA adapter alone in model-adapter/, history, hyperparameters,
    # recipe, restarts, TensorBoard logs): evaluate, export and register read these only.
    assert _tree(on_ray.folder) == _tree(single.folder)
    assert on_ray.has("model-adapter/adapter_config.json") and on_ray.has("tensorboard")
    assert on_ray.summary["ray_train"]["workers"] == 2
    assert (
        on_ray.summary["lora_target_modules"] == single.summary["lora_target_modules"] == ["q_proj", "v_proj"]
    )
    assert on_ray.summary["parameters"] == single.summary["parameters"]
    hyper = on_ray.json("hyperparameters")
    assert hyper["batch_size"] == 8 and hyper["batch_size_per_worker"] == 4  # the same global batch
    assert {k: v for k, v in hyper.items() if k in single.json("hyperparameters")} == single.json(
        "hyperparameters"
    )
    assert on_ray.metrics["steps"] == single.metrics["steps"]  # the same steps of the same batches
    # The merged model is a plain transformers folder that generates.
    model = AutoModelForCausalLM.from_pretrained(on_ray.path("model"))
    tokenizer = AutoTokenizer.from_pretrained(on_ray.path("model"))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "opposite of hot"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**prompt, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape == (1, prompt["input_ids"].shape[1] + 3)


def test_under_a_budget_two_workers_stop_together_at_the_clocks_end(
    two_nodes: str, tiny_model: Path, tmp_path: Path
) -> None:
    """A budget gives the workers a wall-clock end (training/ray_budget.py). They take the
    largest progress each step, so they stop at the same step: a worker stopping one step
    earlier would leave the other waiting in its next all-reduce, and this test would hang."""
    from lmforge.training.ray_train import fit_classifier_on_ray

    frame = pd.DataFrame(make_rows(per_class=40), columns=["text", "label"])
    labels = sorted(frame["label"].unique())
    planned = 400 * 160 // 8  # 400 epochs: minutes of training, far past the clock's end
    cfg = TrainConfig(
        pooling="mean",
        epochs=400,
        batch_size=8,
        learning_rate=5e-3,
        max_length=16,
        max_steps=planned,
        eval_steps=planned + 1,  # evaluations come from the clock's rungs and end
        lr_scheduler="constant_with_warmup",
        warmup_ratio=0.0,
        early_stopping_patience=None,
    )
    clock = {"end": time.time() + 20, "max_steps": planned, "warmup_steps": 0, "shape": "linear"}
    ticks: list[dict[str, Any]] = []
    fit = fit_classifier_on_ray(
        str(tiny_model),
        tmp_path,
        labels,
        frame,
        frame.head(40),
        cfg,
        ExecutorConfig(type="ray", address=two_nodes, train_workers=2),
        tmp_path / "storage",
        "budgeted",
        tmp_path / "model",
        clock=clock,
        progress=ticks.append,
    )
    assert 0 < fit.steps < planned  # ended by the clock
    evaluated = [row["step"] for row in fit.log_history if "eval_loss" in row]
    assert evaluated[-1] == fit.steps  # the end is evaluated, as a planned last step is
    assert (tmp_path / "model" / "config.json").exists()
    # Rank 0's progress reached the driver while the workers trained: steps and validations.
    steps = [tick["completed"] for tick in ticks if "completed" in tick]
    assert steps[0] == 0 and steps == sorted(steps) and steps[-1] == fit.steps and len(steps) > 3
    assert all(tick["total"] == planned for tick in ticks if "completed" in tick)
    assert len([tick for tick in ticks if "evaluated" in tick]) == len(evaluated)
    shutil.rmtree(tmp_path / "storage", ignore_errors=True)


@pytest.mark.parametrize("mode", [None, "disabled"])
def test_a_client_joins_with_the_token_at_hand_and_without_one_gets_one_error(
    two_nodes: str, mode: str | None
) -> None:
    """The cluster asks for a token. A client with no RAY_AUTH_MODE finds ~/.ray/auth_token and
    joins in token mode (a plain ray.init(address) would be refused); a client told not to send
    a token is refused, and lmforge says which setting named the cluster and what to check. In a
    child process each: Ray reads a process's authentication mode once."""
    code = (
        "import sys\n"
        "import ray\n"
        "from lmforge.config import ExecutorConfig\n"
        "from lmforge.errors import LmforgeError\n"
        "from lmforge.tuning.executors import connect_ray\n"
        "try:\n"
        f"    connect_ray(ExecutorConfig(type='ray', address={two_nodes!r}))\n"
        "except LmforgeError as error:\n"
        "    print(error)\n"
        "    sys.exit(3)\n"
        "print('cpus', ray.cluster_resources().get('CPU'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    if mode:
        env["RAY_AUTH_MODE"] = mode
    child = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    if mode is None:
        assert child.returncode == 0, child.stderr[-2000:]
        assert "cpus 2.0" in child.stdout
        return
    assert child.returncode == 3, child.stderr[-2000:]
    assert f"executor.address: cannot join the Ray cluster at {two_nodes}" in child.stdout
    assert "RAY_AUTH_MODE is 'disabled'" in child.stdout and "RAY_AUTH_MODE=token" in child.stdout
