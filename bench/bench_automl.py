"""AutoML figures, measured side by side in one run (numbers go in the closing note).

1. TPE + pruning (median, hyperband, successive halving) vs random search without pruning,
   same number of trials, on an emotion subset: best validation macro-F1 and total training
   steps (goal: same best +-0.5 pt with <= 40% of the steps).
2. model selection: seconds the select stage spends on [minilm-l6, smollm2-135m] vs the
   time a full fine-tune of every candidate would take (each candidate's step time is
   measured on 20 real training steps and multiplied by the steps of a full fine-tune).
3. Ray executor overhead per trial vs local: the same tiny study run both ways.

    python bench/bench_automl.py [--part tune select ray] [--trials 12] [--rows 480]
        [--seeds 1 2 3] [--arms random median successive_halving:loss:1 ...]
        [--prune-on metric|loss] [--prune-after 1] [--epochs 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))


def emotion_subset(folder: Path, rows: int, validation_rows: int) -> tuple[Path, Path]:
    train = pd.read_csv(DATA / "emotion.csv")
    valid = pd.read_csv(DATA / "emotion_validation.csv")
    train = train.sample(frac=1.0, random_state=0).groupby("label").head(rows // train["label"].nunique())
    valid = valid.sample(n=validation_rows, random_state=0)
    train.to_csv(folder / "train.csv", index=False)
    valid.to_csv(folder / "validation.csv", index=False)
    return folder / "train.csv", folder / "validation.csv"


def base_config(folder: Path, train: Path, validation: Path) -> dict[str, Any]:
    return {
        "project": "bench-automl",
        "data": {"train": str(train), "validation": str(validation)},
        "clean": {"label_noise": "off", "near_duplicates": False},
        "split": {"remove_leakage": False},
        "label": {"enabled": False},
        "train": {"max_length": 40, "eval_steps": 10, "eval_batch_size": 128, "logging_steps": 10},
        "tracking": {"enabled": False, "tensorboard": False},
        "output_dir": str(folder / "runs"),
    }


def run_until(config: dict[str, Any], stage: str) -> Any:
    from lmforge.config import load_config
    from lmforge.pipeline.runner import run_pipeline

    return run_pipeline(load_config(data=config), until=stage).artifacts[stage]


PRUNERS = {"median": "median pruning", "hyperband": "hyperband", "successive_halving": "successive halving"}


def parse_arm(spec: str, prune_on: str, prune_after: int) -> tuple[str, dict[str, Any]]:
    """`random`, or `PRUNER[:metric|loss[:PRUNE_AFTER]]` for a TPE arm with that pruner; the
    parts left out take --prune-on / --prune-after."""
    if spec == "random":
        # Without a pruner prune_on only decides what the curves record.
        return "random, no pruning", {"sampler": "random", "pruner": "none", "prune_on": prune_on}
    pruner, *rest = spec.split(":")
    if pruner not in PRUNERS or len(rest) > 2 or (rest and rest[0] not in ("metric", "loss")):
        raise argparse.ArgumentTypeError(f"arm {spec!r}: expected random or PRUNER[:metric|loss[:N]]")
    on = rest[0] if rest else prune_on
    after = int(rest[1]) if len(rest) == 2 else prune_after
    tune = {"sampler": "tpe", "pruner": pruner, "prune_on": on, "startup_trials": 3, "prune_after": after}
    return f"TPE + {PRUNERS[pruner]} ({on}, prune_after {after})", tune


def bench_tune(
    trials: int,
    rows: int,
    arm_specs: list[str],
    seed: int = 1,
    prune_after: int = 1,
    prune_on: str = "metric",
    epochs: int = 3,
) -> None:
    # Epochs are the pruner's resource, not a searched parameter: every trial may run all
    # its epochs and pruning decides which stop early (Hyperband's own framing). Searching
    # epochs as well would let random search save steps by drawing short trials.
    space = {
        "learning_rate": {"low": 1e-5, "high": 3e-3, "log": True},
        "batch_size": {"choices": [16, 32]},
        "weight_decay": {"low": 0.0, "high": 0.1},
        "warmup_ratio": {"low": 0.0, "high": 0.2},
    }
    arms = dict(parse_arm(spec, prune_on, prune_after) for spec in arm_specs)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train, validation = emotion_subset(folder, rows, 400)
        for index, (name, tune) in enumerate(arms.items()):
            config = base_config(folder / f"arm{index}", train, validation)
            config["train"].update({"epochs": epochs, "eval_steps": 8})
            # The study outside the stage's scratch folder (removed when the stage succeeds).
            study_db = folder / f"arm{index}-study.db"
            config["tune"] = {
                "enabled": True,
                "trials": trials,
                "space": space,
                "seed": seed,
                "storage": f"sqlite:///{study_db}",
                **tune,
            }
            started = time.perf_counter()
            artifact = run_until(config, "tune")
            m = artifact.metrics
            table = pd.read_csv(artifact.path("trials.csv"))
            shown = ["number", "state", "value", "steps"] + [c for c in table if c.startswith("param_")]
            print(table[shown].round(5).to_string(index=False), flush=True)
            results[name] = (
                m["best_validation_f1_macro"],
                m["total_steps"],
                time.perf_counter() - started,
                table,
            )
            if tune["pruner"] == "none":
                print(early_rank_correlation(study_db), flush=True)
            print(
                f"{name} best validation macro-F1 {m['best_validation_f1_macro']:.4f}  "
                f"steps {m['total_steps']:.0f}  pruned {m['trials_pruned']:.0f}/{trials}  "
                f"{results[name][2]:.0f}s",
                flush=True,
            )
    if "random, no pruning" not in results:
        return
    rf, rs, rt, _ = results.pop("random, no pruning")
    for name, (f, s, t, table) in results.items():
        print(
            f"{name} vs random: best {100 * (f - rf):+.2f} pt, steps ratio {s / rs:.2f}, "
            f"time ratio {t / rt:.2f}  (goal: within +-0.5 pt with <= 0.40 of the steps); "
            f"{steps_to_reach(table, rf - 0.005) / rs:.2f} of random's steps spent when it "
            "first came within 0.5 pt of random's best"
        )


def steps_to_reach(table: pd.DataFrame, target: float) -> float:
    """Training steps spent, in trial order (trials run one at a time), until a completed
    trial first scored `target` or better; all of them if none did."""
    spent = 0.0
    for _, trial in table.sort_values("number").iterrows():
        spent += trial["steps"]
        if trial["state"] == "COMPLETE" and trial["value"] >= target:
            return spent
    return spent


def early_rank_correlation(study_db: Path) -> str:
    """How well each early evaluation ranks the unpruned trials by their final best macro-F1
    (Spearman), for the metric itself and for what the study's trials reported to the pruner
    (the same metric, or minus the validation loss with prune_on: loss)."""
    import optuna

    study = optuna.load_study(study_name=None, storage=f"sqlite:///{study_db}")
    complete = [t for t in study.trials if t.value is not None]
    final = pd.Series([t.value for t in complete])
    lines = ["evaluation  spearman(metric, final)  spearman(pruner signal, final)"]
    for k in range(1, 6):
        metric = pd.Series([t.user_attrs["metric_curve"][k - 1] for t in complete])
        signal = pd.Series([t.intermediate_values[k] for t in complete])
        lines.append(
            f"{k:10d}  {metric.corr(final, method='spearman'):23.2f}  "
            f"{signal.corr(final, method='spearman'):30.2f}"
        )
    return "\n".join(lines)


def bench_select(rows: int) -> None:
    from lmforge.config import TrainConfig
    from lmforge.training.fit import fit_classifier

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train, validation = emotion_subset(folder, rows, 400)
        config = base_config(folder, train, validation)
        config["model"] = ["minilm-l6", "smollm2-135m"]
        started = time.perf_counter()
        select = run_until(config, "select")
        select_seconds = time.perf_counter() - started
        cfg = TrainConfig.model_validate({**config["train"], "batch_size": 32, "epochs": 3})
        labels = sorted(pd.read_csv(train)["label"].unique())
        frame, valid = pd.read_csv(train), pd.read_csv(validation)
        full_steps = -(-len(frame) * 0.9 // cfg.batch_size) * cfg.epochs  # ~90% of rows stay in train
        total = 0.0
        for model in config["model"]:
            probe = cfg.model_copy(update={"max_steps": 20, "eval_steps": 1000})
            fit = fit_classifier(
                model, ROOT, labels, frame, valid.head(32), probe, folder / model, save_checkpoints=False
            )
            per_step = fit.train_seconds / 20
            total += per_step * full_steps
            print(
                f"  {model}: {per_step:.2f} s/step measured -> "
                f"full fine-tune ~{per_step * full_steps / 60:.1f} min"
            )
        print(f"chosen: {select.json('choice')['model']} ({select.json('choice')['why']})")
        print(
            f"select stage {select_seconds:.0f}s vs full fine-tune of every candidate ~{total:.0f}s "
            f"-> ratio {select_seconds / total:.3f}"
        )


def bench_ray(trials: int) -> None:
    from tests.conftest import build_tiny_bert, make_rows, write_csv

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = build_tiny_bert(folder / "tiny")
        data = write_csv(folder / "data.csv", make_rows(per_class=60))
        timings = {}
        executor: dict[str, Any]
        for executor in ({"type": "local"}, {"type": "ray", "num_cpus": 1, "max_concurrent": 1}):
            config = {
                "project": "bench-ray",
                "data": {"train": str(data)},
                "model": str(model),
                "clean": {"label_noise": "off"},
                "label": {"enabled": False},
                "train": {"epochs": 2, "batch_size": 8, "learning_rate": 5e-3, "max_length": 16},
                "tune": {
                    "enabled": True,
                    "trials": trials,
                    "pruner": "none",
                    "space": {"learning_rate": {"low": 1e-3, "high": 1e-2}},
                },
                "executor": executor,
                "tracking": {"enabled": False, "tensorboard": False},
                "output_dir": str(folder / str(executor["type"])),
            }
            started = time.perf_counter()
            artifact = run_until(config, "tune")
            timings[executor["type"]] = (time.perf_counter() - started, artifact.metrics["seconds"])
        (_, local_study), (_, ray_study) = timings["local"], timings["ray"]
        print(
            f"local: study {local_study:.1f}s ({local_study / trials:.2f}s/trial); "
            f"ray: study {ray_study:.1f}s incl. Ray start-up ({ray_study / trials:.2f}s/trial); "
            f"overhead {(ray_study - local_study) / trials:.2f}s per trial (sequential trials, 1 CPU each)"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", nargs="+", default=["tune", "select", "ray"])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--rows", type=int, default=480)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="sampler seeds, one study each")
    parser.add_argument(
        "--arms",
        nargs="+",
        default=["random", "successive_halving", "median", "hyperband"],
        help="random, or PRUNER[:metric|loss[:PRUNE_AFTER]] with PRUNER one of " + ", ".join(PRUNERS),
    )
    parser.add_argument("--prune-after", type=int, default=1, help="tune.prune_after of the pruned arms")
    parser.add_argument(
        "--prune-on", choices=["metric", "loss"], default="loss", help="tune.prune_on (as in lmforge)"
    )
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial, the pruners' resource")
    args = parser.parse_args()
    for spec in args.arms:
        try:
            parse_arm(spec, args.prune_on, args.prune_after)
        except (argparse.ArgumentTypeError, ValueError) as error:
            parser.error(str(error))
    if {"tune", "select"} & set(args.part) and not (DATA / "emotion.csv").exists():
        sys.exit(f"{DATA / 'emotion.csv'} not found: the tune and select parts need ../shared/data")
    if "tune" in args.part:
        for seed in args.seeds:
            print(f"== sampler seed {seed}", flush=True)
            bench_tune(args.trials, args.rows, args.arms, seed, args.prune_after, args.prune_on, args.epochs)
    if "select" in args.part:
        bench_select(args.rows)
    if "ray" in args.part:
        bench_ray(6)


if __name__ == "__main__":
    main()
