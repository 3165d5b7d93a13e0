"""The GPU path, measured: mixed precision, CUDA training and CUDA inference speed.

Runs lmforge's own code (fit_classifier, the scorer's loader, fit_causal_lm) on the machine's
GPU and prints one JSON line per measurement, side by side with the same work on its CPU:

  classify-recipe   minilm-l6 fine-tuned on emotion with every setting `auto` (the recipe;
                    precision auto = bf16 on a GPU that has it): wall time, test macro-F1
  classify-speed    the same model and data, a fixed number of steps at fp32 / bf16 / fp16
                    (no evaluation, no checkpoints): optimizer steps and samples per second
  inference         the fine-tuned model reloaded as evaluate / predict / serve load it
                    (models/device.py places it): texts per second on the GPU at fp32 and
                    under bf16 autocast (with the share of labels that agree), and on the CPU
  causal            a SmolLM2-135M-shaped causal LM (random weights: the speed does not depend
                    on them) trained as language modelling, full and LoRA, bf16: tokens/s
                    and peak GPU memory

    python bench/bench_gpu.py --model-dir MINILM_FOLDER --causal-dir SMOLLM2_CONFIG_FOLDER \
        --data-dir ../shared/data --out bench/out/gpu
    python bench/bench_gpu.py ... --smoke     # a few rows and steps: checks the script on a CPU

A section that fails prints its error and the others still run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def emit(out: Path, record: dict[str, Any]) -> None:
    line = json.dumps(record, default=str)
    print(line, flush=True)
    with (out / "gpu.jsonl").open("a", encoding="utf-8") as f:
        f.write(line + "\n")


def env_record() -> dict[str, Any]:
    import torch
    import transformers

    gpu = torch.cuda.is_available()
    return {
        "section": "env",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": gpu,
        "gpu": torch.cuda.get_device_name(0) if gpu else None,
        "bf16_supported": bool(gpu and torch.cuda.is_bf16_supported()),
        "cpu_threads": torch.get_num_threads(),
    }


def load_emotion(data_dir: Path, smoke: bool) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    train = pd.read_csv(data_dir / "emotion.csv")
    validation = pd.read_csv(data_dir / "emotion_validation.csv")
    test = pd.read_csv(data_dir / "emotion_test.csv")
    if smoke:
        train, validation, test = train.head(96), validation.head(32), test.head(32)
    return train, validation, test


def classify_recipe(args: argparse.Namespace, out: Path) -> None:
    """The recipe's run (every `auto` resolved), scored on test by the inference loader."""
    import torch
    from sklearn.metrics import accuracy_score, f1_score

    from lmforge.config import TrainConfig
    from lmforge.models.load import load_trained_classifier
    from lmforge.tasks.classification import predict_proba
    from lmforge.training.fit import fit_classifier, save_fitted

    train, validation, test = load_emotion(args.data_dir, args.smoke)
    labels = sorted(train["label"].unique())
    cfg = TrainConfig(max_steps=4) if args.smoke else TrainConfig()
    with tempfile.TemporaryDirectory() as scratch:
        torch.cuda.reset_peak_memory_stats() if torch.cuda.is_available() else None
        started = time.perf_counter()
        fit = fit_classifier(
            str(args.model_dir), ROOT, labels, train, validation, cfg, Path(scratch) / "ckpt"
        )
        seconds = time.perf_counter() - started
        folder = Path(scratch) / "model"
        save_fitted(fit, folder)
        args.fitted = Path(tempfile.mkdtemp(prefix="lmforge-gpu-fitted-"))  # for the inference section
        save_fitted(fit, args.fitted)
        tokenizer, model = load_trained_classifier(folder, on_device=True)
        probs = predict_proba(
            model, tokenizer, test["text"].tolist(), batch_size=64, max_length=fit.settings.max_length
        )
    predicted = [labels[i] for i in probs.argmax(axis=1)]
    emit(
        out,
        {
            "section": "classify-recipe",
            "device": str(fit.trainer.args.device),
            "precision": "bf16" if fit.trainer.args.bf16 else "fp16" if fit.trainer.args.fp16 else "fp32",
            "inference_device": str(model.device),
            "settings": {
                k: getattr(fit.settings, k)
                for k in ("epochs", "batch_size", "learning_rate", "max_length", "lr_scheduler")
            },
            "steps": fit.steps,
            "train_seconds": round(fit.train_seconds, 1),
            "wall_seconds": round(seconds, 1),
            "steps_per_s": round(fit.steps / fit.train_seconds, 2),
            "restarts": len(fit.restarts),
            "test_accuracy": round(accuracy_score(test["label"], predicted), 4),
            "test_f1_macro": round(f1_score(test["label"], predicted, average="macro"), 4),
            "peak_gpu_gib": _peak_gib(),
        },
    )


def classify_speed(args: argparse.Namespace, out: Path) -> None:
    """Steps per second at each precision, same steps, no evaluation or checkpoints."""
    import torch

    from lmforge.config import TrainConfig
    from lmforge.training.fit import fit_classifier

    train, validation, _ = load_emotion(args.data_dir, args.smoke)
    labels = sorted(train["label"].unique())
    steps = 4 if args.smoke else args.speed_steps
    precisions = args.precisions if torch.cuda.is_available() else ["fp32"]
    for batch_size, precision in [(b, p) for b in args.speed_batches for p in precisions]:
        # tf32: fp32 weights and maths, matrix products on the tensor cores at TF32.
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        cfg = TrainConfig(
            max_steps=steps,
            precision="fp32" if precision == "tf32" else precision,
            eval_steps=10**6,
            batch_size=batch_size,
        )
        timer = step_timer()
        with tempfile.TemporaryDirectory() as scratch:
            fit = fit_classifier(
                str(args.model_dir),
                ROOT,
                labels,
                train,
                validation.head(64),
                cfg,
                Path(scratch) / "ckpt",
                save_checkpoints=False,
                callbacks=lambda timer=timer: [timer],
            )
        steady = timer.seconds_per_step()
        emit(
            out,
            {
                "section": "classify-speed",
                "device": str(fit.trainer.args.device),
                "precision": precision,
                "steps": fit.steps,
                "batch_size": batch_size,
                "max_length": fit.settings.max_length,
                "train_seconds": round(fit.train_seconds, 2),
                "steps_per_s": round(fit.steps / fit.train_seconds, 2),
                "samples_per_s": round(batch_size * fit.steps / fit.train_seconds, 1),
                "steady_ms_per_step": round(1000 * steady, 2) if steady else None,
                "steady_samples_per_s": round(batch_size / steady, 1) if steady else None,
                "train_loss": round(fit.train_loss, 4),
            },
        )


def inference(args: argparse.Namespace, out: Path) -> None:
    """Texts per second through the loader evaluate / predict / serve use."""
    import os

    import torch

    from lmforge.models.load import load_trained_classifier
    from lmforge.tasks.classification import predict_proba

    folder = getattr(args, "fitted", None) or args.model_dir
    _, _, test = load_emotion(args.data_dir, args.smoke)
    texts = (test["text"].tolist() * (1 if args.smoke else 5))[: 64 if args.smoke else 10_000]
    results: dict[str, np.ndarray] = {}
    arms = [("cuda", "fp32"), ("cuda", "bf16-autocast"), ("cpu", "fp32")]
    for device, mode in arms:
        if device == "cuda" and not torch.cuda.is_available():
            continue
        os.environ["LMFORGE_DEVICE"] = device
        tokenizer, model = load_trained_classifier(Path(folder), on_device=True)
        cpu_texts = texts if device == "cuda" else texts[: max(32, len(texts) // 5)]
        for batch_size in (32, 256) if device == "cuda" else (32,):
            predict_proba(model, tokenizer, cpu_texts[:64], batch_size=batch_size, max_length=128)  # warm
            started = time.perf_counter()
            autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode == "bf16-autocast")
            with autocast:
                probs = predict_proba(model, tokenizer, cpu_texts, batch_size=batch_size, max_length=128)
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            results[f"{device}-{mode}-{batch_size}"] = probs
            reference = results.get(f"cuda-fp32-{batch_size}")
            agree = (
                float((reference.argmax(1) == probs.argmax(1)).mean())
                if reference is not None and len(reference) == len(probs)
                else None
            )
            emit(
                out,
                {
                    "section": "inference",
                    "device": str(model.device),
                    "mode": mode,
                    "batch_size": batch_size,
                    "texts": len(cpu_texts),
                    "texts_per_s": round(len(cpu_texts) / seconds, 1),
                    "labels_agree_with_fp32": agree,
                },
            )
    os.environ.pop("LMFORGE_DEVICE", None)


def causal(args: argparse.Namespace, out: Path) -> None:
    """Language-modelling steps of a SmolLM2-135M-shaped model, full and LoRA."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from lmforge.config import TrainConfig
    from lmforge.training.causal_fit import fit_causal_lm, prepare_causal

    rows = [json.loads(line) for line in (args.data_dir / "wikitext2_valid.jsonl").open()]
    texts = [r["text"] for r in rows if len(r["text"].strip()) > 200]
    if args.smoke:
        texts = texts[:40]
    split = int(len(texts) * 0.9)
    train, validation = pd.DataFrame({"text": texts[:split]}), pd.DataFrame({"text": texts[split:][:64]})
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(scratch) / "causal"
        config = AutoConfig.from_pretrained(args.causal_dir)
        if args.causal_shape == "1b":  # a Llama-shaped 0.8B model: is bf16 faster at that size?
            config.hidden_size, config.intermediate_size, config.num_hidden_layers = 2048, 5632, 16
            config.num_attention_heads, config.num_key_value_heads, config.head_dim = 32, 8, 64
        if args.smoke:  # a CPU check of the code path, not of the speed
            config.num_hidden_layers, config.hidden_size, config.intermediate_size = 2, 64, 128
            config.num_attention_heads, config.num_key_value_heads = 2, 1
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(model_dir)
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            if (args.causal_dir / name).exists():
                (model_dir / name).write_bytes((args.causal_dir / name).read_bytes())
        for method, precision in [(m, p) for m in args.causal_methods for p in args.causal_precisions]:
            torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
            cfg = TrainConfig(
                method=method,
                precision="fp32" if precision == "tf32" or not torch.cuda.is_available() else precision,
                max_steps=4 if args.smoke else args.causal_steps,
                max_length=512,
                batch_size=8,
                eval_steps=10**6,
                learning_rate=1e-4 if method == "full" else 1e-3,
            )
            data = prepare_causal(str(model_dir), ROOT, cfg, train, validation, lm=True)
            timer = step_timer()
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            fit = fit_causal_lm(
                str(model_dir),
                ROOT,
                data.tokenizer,
                data.train,
                data.validation,
                data.settings,
                Path(scratch) / f"ckpt-{method}",
                save_checkpoints=False,
                callbacks=lambda timer=timer: [timer],
            )
            steady = timer.seconds_per_step()
            tokens = fit.steps * data.settings.batch_size * data.settings.max_length
            emit(
                out,
                {
                    "section": "causal",
                    "device": str(fit.trainer.args.device),
                    "precision": precision,
                    "method": method,
                    "parameters_trained": fit.trainable_parameters,
                    "steps": fit.steps,
                    "batch_x_length": [data.settings.batch_size, data.settings.max_length],
                    "packing": data.settings.packing,
                    "train_seconds": round(fit.train_seconds, 2),
                    "tokens_per_s_upper": round(tokens / fit.train_seconds),
                    "steady_ms_per_step": round(1000 * steady, 1) if steady else None,
                    "steady_tokens_per_s_upper": round(tokens / fit.steps / steady) if steady else None,
                    "train_loss": round(fit.train_loss, 3),
                    "peak_gpu_gib": _peak_gib(),
                },
            )


WARM_STEPS = 10  # the first steps pay CUDA's start-up (context, cuBLAS handles, allocator)


def step_timer() -> Any:
    """A Trainer callback timing the steps after the first WARM_STEPS (steady state)."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.marks: dict[int, float] = {}

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.marks[state.global_step] = time.perf_counter()

        def seconds_per_step(self) -> float | None:
            steps = sorted(s for s in self.marks if s >= WARM_STEPS)
            if len(steps) < 2:
                return None
            return (self.marks[steps[-1]] - self.marks[steps[0]]) / (steps[-1] - steps[0])

    return StepTimer()


def _peak_gib() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


SECTIONS = {
    "classify-recipe": classify_recipe,
    "classify-speed": classify_speed,
    "inference": inference,
    "causal": causal,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="minilm-l6's model folder")
    parser.add_argument("--causal-dir", type=Path, required=True, help="a SmolLM2 config + tokenizer")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "gpu")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--speed-steps", type=int, default=300)
    parser.add_argument("--causal-steps", type=int, default=60)
    parser.add_argument("--speed-batches", type=int, nargs="+", default=[32])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "tf32", "bf16", "fp16"])
    parser.add_argument("--causal-methods", nargs="+", default=["full", "lora"])
    parser.add_argument("--causal-precisions", nargs="+", default=["bf16"])
    parser.add_argument("--causal-shape", choices=["smollm2", "1b"], default="smollm2")
    parser.add_argument("--smoke", action="store_true", help="a few rows and steps (a CPU check)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    emit(args.out, env_record())
    for name in args.sections:
        started = time.perf_counter()
        try:
            SECTIONS[name](args, args.out)
        except Exception as exc:  # report and go on: one device call has to bring back all it can
            traceback.print_exc()
            emit(args.out, {"section": name, "error": f"{type(exc).__name__}: {exc}"})
        print(f"# {name}: {time.perf_counter() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
