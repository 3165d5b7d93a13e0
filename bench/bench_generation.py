"""Generation figures, measured side by side in one run (numbers go in the closing note).

1. lmforge's LoRA step time vs a raw peft + Trainer script (what a user writes by hand),
   same model, data, tokens and settings (goal <= 1.05x). Alternated A/B, each run in its
   own process; the first step (warm-up) is not timed.
2. s/step and peak memory (max RSS of the process): LoRA vs full fine-tune vs freeze.
3. Test ROUGE-L and perplexity before vs after LoRA fine-tuning, through the whole
   pipeline, on ../shared/data/samsum_sample.jsonl and self_instruct_user_oriented.jsonl
   (split: seed 42, 15% validation, 15% test).
4. smollm2-135m GGUF -> safetensors: first load (dequantize + save to the cache) vs a
   cached load.

    python bench/bench_generation.py [--part steps memory quality gguf] [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))

SETTINGS = {"batch_size": 4, "max_length": 128, "learning_rate": 2e-4, "lora_r": 8, "lora_alpha": 16}


def rows_for_steps() -> list[dict[str, str]]:
    source = DATA / "samsum_sample.jsonl"
    if not source.exists():
        source = ROOT / "examples" / "support-replies" / "replies.jsonl"
    return [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()][:64]


def worker(kind: str, method: str, steps: int) -> dict[str, float]:
    """One training run in this process; returns s/step (after the first) and peak RSS."""
    from transformers import TrainerCallback

    from lmforge.models.load import model_folder
    from lmforge.models.resolve import resolve_model
    from lmforge.tasks.generation import conversation, encode_conversations

    folder = model_folder(resolve_model("smollm2-135m"))
    rows = rows_for_steps()
    conversations = [conversation(r["instruction"], r.get("input"), r["output"]) for r in rows]
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            times.append(time.perf_counter() - self.started)

    with tempfile.TemporaryDirectory() as tmp:
        if kind == "lmforge":
            from lmforge.config import TrainConfig
            from lmforge.training.causal_fit import fit_causal_lm, load_tokenizer

            tokenizer = load_tokenizer("smollm2-135m", ROOT)
            encoded = encode_conversations(tokenizer, conversations, SETTINGS["max_length"])
            cfg = TrainConfig.model_validate(
                {
                    **SETTINGS,
                    "method": method,
                    "max_steps": steps,
                    "eval_steps": 10_000,
                    "logging_steps": 1000,
                    "eval_batch_size": 4,
                }
            )
            # The Trainer evaluates once at the end; a tiny validation set keeps that out of the figures.
            validation = encode_conversations(tokenizer, conversations[:4], SETTINGS["max_length"])
            fit_causal_lm(
                "smollm2-135m",
                ROOT,
                tokenizer,
                encoded,
                validation,
                cfg,
                Path(tmp),
                callbacks=lambda: [Clock()],
                save_checkpoints=False,
            )
        else:
            raw_peft_trainer(folder, conversations, steps, Path(tmp), Clock())
    timed = times[1:]
    return {
        "s_per_step": sum(timed) / len(timed),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


def raw_peft_trainer(folder: Path, conversations: list[Any], steps: int, out: Path, clock: Any) -> None:
    """What a user writes by hand: chat template, prompt tokens masked, peft LoRA, Trainer."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(folder)
    examples = []
    for messages in conversations:
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
        if len(p) >= SETTINGS["max_length"]:  # nothing left to learn once cut: skip, as lmforge does
            continue
        ids = (p + c)[: SETTINGS["max_length"]]
        examples.append({"input_ids": ids, "labels": ([-100] * len(p) + c)[: SETTINGS["max_length"]]})

    def collate(batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        pad = tokenizer.pad_token_id or 0
        return {
            "input_ids": torch.tensor(
                [b["input_ids"] + [pad] * (width - len(b["input_ids"])) for b in batch]
            ),
            "labels": torch.tensor([b["labels"] + [-100] * (width - len(b["labels"])) for b in batch]),
            "attention_mask": torch.tensor(
                [[1] * len(b["input_ids"]) + [0] * (width - len(b["input_ids"])) for b in batch]
            ),
        }

    model = AutoModelForCausalLM.from_pretrained(folder)
    model = get_peft_model(
        model,
        LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=SETTINGS["lora_r"],
            lora_alpha=SETTINGS["lora_alpha"],
            lora_dropout=0.05,
        ),
    )
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=SETTINGS["batch_size"],
        learning_rate=SETTINGS["learning_rate"],
        warmup_steps=0.1,
        weight_decay=0.01,
        report_to=[],
        save_strategy="no",
        logging_steps=1000,
        disable_tqdm=True,
        use_cpu=True,
        seed=42,
    )
    Trainer(model=model, args=args, train_dataset=examples, data_collator=collate, callbacks=[clock]).train()


def spawn(kind: str, method: str, steps: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", kind, method, str(steps)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_steps(steps: int) -> None:
    runs: dict[str, list[float]] = {"raw": [], "lmforge": []}
    for _ in range(2):
        for kind in ("raw", "lmforge"):
            found = spawn(kind, "lora", steps)
            runs[kind].append(found["s_per_step"])
            print(
                f"  {kind:8s} LoRA {found['s_per_step']:.2f} s/step  peak {found['peak_rss_gb']:.2f} GB",
                flush=True,
            )
    raw, ours = min(runs["raw"]), min(runs["lmforge"])
    print(
        f"LoRA step time: lmforge {ours:.2f} s vs raw peft + Trainer {raw:.2f} s "
        f"-> {ours / raw:.3f}x (goal <= 1.05)"
    )


def bench_memory(steps: int) -> None:
    found = {method: spawn("lmforge", method, steps) for method in ("lora", "full", "freeze")}
    for method, f in found.items():
        print(f"  {method:6s} {f['s_per_step']:.2f} s/step  peak RSS {f['peak_rss_gb']:.2f} GB", flush=True)
    lora, full = found["lora"], found["full"]
    print(
        f"LoRA vs full: step time {lora['s_per_step'] / full['s_per_step']:.2f}x, "
        f"peak memory {lora['peak_rss_gb'] / full['peak_rss_gb']:.2f}x"
    )


def bench_quality() -> None:
    from lmforge.config import load_config
    from lmforge.pipeline.runner import run_pipeline

    for name, max_length in (("samsum_sample.jsonl", 256), ("self_instruct_user_oriented.jsonl", 256)):
        with tempfile.TemporaryDirectory() as tmp:
            config = {
                "project": "bench-generation",
                "task": "generation",
                "data": {"train": str(DATA / name)},
                "split": {"validation": 0.15, "test": 0.15, "seed": 42},
                "model": "smollm2-135m",
                "train": {
                    "method": "lora",
                    "lora_r": 16,
                    "lora_alpha": 32,
                    "epochs": 2,
                    "batch_size": 4,
                    "learning_rate": 1e-3,
                    "max_length": max_length,
                    "eval_steps": 20,
                    "early_stopping_patience": 2,
                },
                "evaluate": {"max_new_tokens": 64, "generation_rows": 32, "max_length": 512},
                "tracking": {"enabled": False, "tensorboard": False},
                "output_dir": str(Path(tmp) / "runs"),
            }
            started = time.perf_counter()
            result = run_pipeline(load_config(data=config), until="evaluate")
            after, before = result.artifacts["evaluate"].metrics, result.artifacts["baseline"].metrics
            rows = result.artifacts["split"].manifest["rows"]
            print(
                f"{name}: split train {rows['train']} / validation {rows['validation']} / "
                f"test {rows['test']}; "
                f"ROUGE-L {before['base_rouge_l']:.3f} -> {after['rouge_l']:.3f}, "
                f"BLEU {before['base_bleu']:.1f} -> {after['bleu']:.1f}, "
                f"perplexity {before['base_perplexity']:.2f} -> {after['perplexity']:.2f} "
                f"({int(after['generated_rows'])} answers scored; {time.perf_counter() - started:.0f} s)",
                flush=True,
            )


def bench_gguf() -> None:
    code = (
        "import time,sys; sys.path.insert(0, {!r})\n"
        "from lmforge.models.load import load_causal_lm\n"
        "from lmforge.models.resolve import resolve_model\n"
        "import transformers; from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "t=time.perf_counter(); load_causal_lm(resolve_model('smollm2-135m')); print(time.perf_counter()-t)\n"
    ).format(str(ROOT / "src"))
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "LMFORGE_CACHE": cache, "HF_HUB_OFFLINE": "1"}
        first, cached = (
            float(
                subprocess.run(
                    [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
                ).stdout.split()[-1]
            )
            for _ in range(2)
        )
    print(
        f"smollm2-135m load: first (GGUF dequantize + cache) {first:.1f} s vs cached {cached:.1f} s "
        f"-> {first / cached:.0f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", nargs="+", default=["steps", "memory", "quality", "gguf"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, method, steps = args.worker
        print(json.dumps(worker(kind, method, int(steps))))
        return
    if "quality" in args.part and not (DATA / "samsum_sample.jsonl").exists():
        sys.exit(f"{DATA} not found: the quality part needs ../shared/data")
    if "steps" in args.part:
        bench_steps(args.steps)
    if "memory" in args.part:
        bench_memory(args.steps)
    if "quality" in args.part:
        bench_quality()
    if "gguf" in args.part:
        bench_gguf()


if __name__ == "__main__":
    main()
