"""The generation and language-modeling pipelines end to end on a tiny random Llama."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lmforge.config import load_config
from lmforge.errors import ConfigError
from lmforge.pipeline.runner import run_pipeline
from tests.conftest import make_instructions


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def gen_config(folder: Path, data: Path, model: Path, **train: Any) -> dict[str, Any]:
    return {
        "project": "gen-test",
        "task": "generation",
        "data": {"train": str(data)},
        "model": str(model),
        "split": {"validation": 0.15, "test": 0.15, "seed": 1},
        "train": {
            "method": "full",  # a tiny random model learns in a few steps only when all of it trains
            "epochs": 12,
            "batch_size": 8,
            "learning_rate": 5e-3,
            "max_length": 32,
            "logging_steps": 5,
            "early_stopping_patience": None,
            **train,
        },
        "evaluate": {"max_new_tokens": 4, "generation_rows": 8, "samples": 3},
        "tracking": {"uri": f"sqlite:///{folder}/mlruns.db", "tensorboard": False},
        "output_dir": str(folder / "runs"),
    }


def test_instruction_tuning_learns_and_exports_a_plain_model(tmp_path: Path, tiny_llama: Path) -> None:
    rows = make_instructions()
    rows[3] = {**rows[3], "output": "  "}  # empty answer
    rows[7] = {**rows[7], "instruction": None}  # no instruction
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    result = run_pipeline(load_config(data=gen_config(tmp_path, data, tiny_llama)))
    a = result.artifacts
    rejected = pd.read_csv(a["validate"].path("rejected.csv"))
    assert sorted(rejected["reason"]) == ["empty output", "missing instruction"]
    assert sorted(rejected["source_row"]) == [4, 8]  # JSONL line numbers
    evaluate, baseline = a["evaluate"].metrics, a["baseline"].metrics
    assert evaluate["perplexity"] < baseline["base_perplexity"] / 2  # it learnt the answers
    assert {"rouge1", "rouge2", "rouge_l", "bleu", "exact_match", "gain_rouge_l_vs_base"} <= set(evaluate)
    samples = a["evaluate"].json("samples")
    assert len(samples) == 3 and {"question", "reference", "base_answer", "answer"} <= set(samples[0])
    assert a["gate"].json("decision")["metric"] == "rouge_l"
    # A word-level tokenizer cannot be written as GGUF: the export says so and the run goes on.
    assert a["export"].summary["gguf"] is None and "tokenizer" in a["export"].summary["skipped"]
    assert a["register"].summary["alias"] == "champion"
    html = a["report"].path("report.html").read_text()
    assert "Before vs after fine-tuning" in html and "Sample answers" in html

    # The exported model is a plain transformers folder: same test loss without lmforge.
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(a["train"].path("model"))
    assert type(model).__name__ == "LlamaForCausalLM"

    from lmforge.eject import eject
    from lmforge.errors import LmforgeError

    with pytest.raises(LmforgeError, match="generation run; eject writes classification scripts only"):
        eject(result.run_dir, tmp_path, tmp_path / "train.py")

    again = run_pipeline(load_config(data=gen_config(tmp_path, data, tiny_llama)))
    assert [k for k, hit in again.cached.items() if not hit] == ["gate"]


@pytest.mark.parametrize(("method", "checkpointing"), [("lora", False), ("lora", True), ("freeze", False)])
def test_parameter_efficient_methods(
    tmp_path: Path, tiny_llama: Path, method: str, checkpointing: bool
) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", make_instructions())
    config = gen_config(
        tmp_path,
        data,
        tiny_llama,
        method=method,
        epochs=2,
        trainable_layers=1,
        gradient_checkpointing=checkpointing,
        gradient_accumulation_steps=2,
    )
    config["register"] = {"enabled": False}
    result = run_pipeline(load_config(data=config), until="train")
    train = result.artifacts["train"]
    summary = train.summary
    assert 0 < summary["trainable_parameters"] < summary["parameters"]
    assert train.metrics["train_loss"] == pytest.approx(train.metrics["train_loss"])  # finite, not NaN
    if method == "lora":
        assert train.has("model-adapter/adapter_config.json")
        assert summary["lora_target_modules"] == ["q_proj", "v_proj"]  # peft's default for llama
    else:  # one block (4 * 32 * 32 attention + 3 * 32 * 64 MLP + 2 norms) and the final norm
        assert summary["trainable_parameters"] == (2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64 + 2 * 32) + 32
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(train.path("model")) is not None


def test_chat_messages_and_prompt_response_layouts(tmp_path: Path, tiny_llama: Path) -> None:
    chats = [
        {
            "messages": [
                {"role": "user", "content": r["instruction"]},
                {"role": "assistant", "content": r["output"]},
            ]
        }
        for r in make_instructions()
    ]
    chats.append({"messages": [{"role": "user", "content": "hi"}]})  # no answer: rejected with the reason
    data = write_jsonl(tmp_path / "chat.jsonl", chats)
    config = gen_config(tmp_path, data, tiny_llama, epochs=1)
    result = run_pipeline(load_config(data=config), until="split")
    reasons = pd.read_csv(result.artifacts["validate"].path("rejected.csv"))["reason"].tolist()
    assert reasons == ["the last message must be the assistant's answer (the training target)"]
    assert result.artifacts["ingest"].summary["train"]["layout"] == "messages"

    pairs = pd.DataFrame(
        {
            "question": [r["instruction"] for r in make_instructions()],
            "answer": [r["output"] for r in make_instructions()],
        }
    )
    csv = tmp_path / "pairs.csv"
    pairs.to_csv(csv, index=False)
    config = gen_config(tmp_path, csv, tiny_llama)
    config["data"].update(prompt_column="question", response_column="answer")
    split = run_pipeline(load_config(data=config), until="split").artifacts["split"]
    first = json.loads(split.table("train")["messages"][0])
    assert [m["role"] for m in first] == ["user", "assistant"]


def test_missing_generation_columns_name_the_settings(tmp_path: Path, tiny_llama: Path) -> None:
    data = write_jsonl(tmp_path / "odd.jsonl", [{"q": "a", "a": "b"}] * 4)
    from lmforge.errors import DataError

    with pytest.raises(DataError, match=r"data\.messages_column") as info:
        run_pipeline(load_config(data=gen_config(tmp_path, data, tiny_llama)), until="ingest")
    assert "odd.jsonl" in str(info.value) and "q, a" in str(info.value)


def test_mostly_unusable_rows_stop_the_run_naming_the_file_and_first_row(
    tmp_path: Path, tiny_llama: Path
) -> None:
    from lmforge.errors import DataError

    rows = [{**r, "output": " "} if i % 4 else r for i, r in enumerate(make_instructions())]
    data = write_jsonl(tmp_path / "blank.jsonl", rows)
    with pytest.raises(DataError, match=r"rows rejected \(7\d%\); first at row 2: empty output") as info:
        run_pipeline(load_config(data=gen_config(tmp_path, data, tiny_llama)), until="validate")
    assert "blank.jsonl" in str(info.value) and "data.*_column settings" in str(info.value)


def test_language_modeling_on_a_text_file(tmp_path: Path, tiny_llama: Path) -> None:
    words = [w for r in make_instructions() for w in (r["instruction"] + " " + r["output"]).split()]
    paragraphs = [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
    text = tmp_path / "domain.txt"
    text.write_text("\n\n".join(paragraphs), encoding="utf-8")
    config = gen_config(tmp_path, text, tiny_llama, packing=True, epochs=4)
    config["task"] = "language-modeling"
    del config["evaluate"]  # answer settings: nothing is generated from raw text, so they are errors
    config["gate"] = {"min": {"perplexity": 1000.0}}
    result = run_pipeline(load_config(data=config))
    metrics = result.artifacts["evaluate"].metrics
    assert metrics["perplexity"] < result.artifacts["baseline"].metrics["base_perplexity"]
    assert "rouge_l" not in metrics
    decision = result.artifacts["gate"].json("decision")
    assert decision["metric"] == "perplexity" and decision["passed"]
    assert {c["name"] for c in decision["checks"]} >= {"baseline", "max perplexity"}

    # Domain-adaptive pretraining: the adapted model is the base of a later generation run.
    adapted = result.artifacts["train"].path("model")
    data = write_jsonl(tmp_path / "data.jsonl", make_instructions())
    follow = gen_config(tmp_path / "next", data, adapted, epochs=1)
    trained = run_pipeline(load_config(data=follow), until="train").artifacts["train"]
    assert trained.summary["model"] == str(adapted)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"gate": {"metric": "f1_macro"}},
            "gate.metric: generation is gated on rouge_l or exact_match or perplexity",
        ),
        ({"train": {"metric_for_best_model": "accuracy"}}, "train.metric_for_best_model: generation picks"),
        (
            {"tune": {"enabled": True, "ensemble_top_k": 3}},
            "tune.ensemble_top_k: averaging trial models applies to classification only",
        ),
    ],
)
def test_generation_config_errors_name_the_key(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(data={"task": "generation", "data": {"train": "x.jsonl"}, **override})


def test_tuning_searches_lora_parameters_for_generation(tmp_path: Path, tiny_llama: Path) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", make_instructions())
    config = gen_config(tmp_path, data, tiny_llama, method="lora", epochs=2, eval_steps=2)
    config["tune"] = {"enabled": True, "trials": 3, "startup_trials": 1, "prune_after": 1}
    config["register"] = {"enabled": False}
    result = run_pipeline(load_config(data=config), until="report")
    tune = result.artifacts["tune"]
    best = tune.json("best")
    assert best["metric"] == "loss" and {"learning_rate", "lora_r", "lora_alpha"} <= set(best["params"])
    assert tune.metrics["trials_complete"] + tune.metrics["trials_pruned"] == 3
    train = result.artifacts["train"]
    assert train.summary["tuned"] == best["params"]
    assert "Hyperparameter search" in result.artifacts["report"].path("report.html").read_text()


def test_too_few_rows_to_split_names_the_file(tmp_path: Path, tiny_llama: Path) -> None:
    from lmforge.errors import DataError

    data = write_jsonl(tmp_path / "two.jsonl", make_instructions()[:2])
    with pytest.raises(DataError, match=r"too few to hold out a validation split") as info:
        run_pipeline(load_config(data=gen_config(tmp_path, data, tiny_llama)), until="split")
    assert "two.jsonl" in str(info.value)


def test_gate_scores_the_generation_champion_on_this_test_set(tmp_path: Path, tiny_llama: Path) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", make_instructions())
    strong = gen_config(tmp_path, data, tiny_llama)
    strong["gate"] = {"metric": "perplexity"}
    strong["evaluate"]["generation_rows"] = 0  # perplexity only: faster
    first = run_pipeline(load_config(data=strong))
    assert first.artifacts["register"].summary["alias"] == "champion"

    weak = {**strong, "train": {**strong["train"], "epochs": 1}}
    second = run_pipeline(load_config(data=weak))
    decision = second.artifacts["gate"].json("decision")
    champion = next(c for c in decision["checks"] if c["name"] == "champion")
    assert not champion["passed"] and "champion version 1" in champion["detail"]
    assert second.artifacts["register"].summary["alias"] == "challenger"


def test_nothing_fits_max_length_is_a_clear_error(tmp_path: Path, tiny_llama: Path) -> None:
    from lmforge.errors import DataError

    data = write_jsonl(tmp_path / "data.jsonl", make_instructions())
    config = gen_config(tmp_path, data, tiny_llama, max_length=8)  # every prompt is longer
    with pytest.raises(DataError, match=r"no training example fits train\.max_length"):
        run_pipeline(load_config(data=config), until="train")


def _pairs(answer: Any) -> list[dict[str, Any]]:
    return [{"prompt": r["instruction"], "response": answer(i, r)} for i, r in enumerate(make_instructions())]


@pytest.mark.parametrize(
    ("task", "name", "rows", "fragments"),
    [
        # The answer column holds JSON numbers: `str()` would have trained on "0", "1", ...
        ("generation", "d.jsonl", _pairs(lambda i, r: i), ["row 1", "column 'response'", "a number"]),
        (
            "generation",
            "d.jsonl",
            _pairs(lambda i, r: [r["output"]] if i == 3 else r["output"]),
            ["row 4", "a list"],
        ),
        (
            "generation",
            "d.jsonl",
            [{**r, "output": i % 2 == 0} for i, r in enumerate(make_instructions())],
            ["row 1", "column 'output'", "true/false", "data.output_column"],
        ),
        (
            "generation",
            "d.csv",
            [{"prompt": i, "response": r["output"]} for i, r in enumerate(make_instructions())],
            ["column 'prompt'", "every value is a number", "data.prompt_column"],
        ),
        (
            "language-modeling",
            "d.jsonl",
            [{"text": i} for i in range(40)],
            ["row 1", "column 'text'", "a number", "data.text_column"],
        ),
    ],
    ids=[
        "answers-json-numbers",
        "an-answer-json-list",
        "outputs-true-false",
        "prompts-csv-numbers",
        "lm-text-numbers",
    ],
)
def test_generation_columns_that_hold_no_text_are_refused(
    tmp_path: Path, tiny_llama: Path, task: str, name: str, rows: list[dict[str, Any]], fragments: list[str]
) -> None:
    from lmforge.errors import DataError

    path = tmp_path / name
    write_jsonl(path, rows) if name.endswith(".jsonl") else pd.DataFrame(rows).to_csv(path, index=False)
    config = gen_config(tmp_path, path, tiny_llama)
    config["task"] = task
    if task == "language-modeling":
        del config["evaluate"]
    with pytest.raises(DataError) as info:
        run_pipeline(load_config(data=config), until="ingest")
    message = str(info.value)
    assert name in message and all(fragment in message for fragment in fragments), message


def test_answers_that_are_number_strings_are_kept(tmp_path: Path, tiny_llama: Path) -> None:
    # Arithmetic: every answer a number, written as text (a CSV has no types) — a right dataset.
    path = tmp_path / "sums.csv"
    pd.DataFrame(
        {"prompt": [f"{i} plus {i}" for i in range(40)], "response": [2 * i for i in range(40)]}
    ).to_csv(path, index=False)
    ingest = run_pipeline(load_config(data=gen_config(tmp_path, path, tiny_llama)), until="ingest")
    first = json.loads(ingest.artifacts["ingest"].table("train")["messages"][3])
    assert first[-1] == {"role": "assistant", "content": "6"}


def test_a_budget_on_a_causal_run_plans_it_and_the_report_shows_the_plan(
    tmp_path: Path, tiny_llama: Path
) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", make_instructions())
    config = dict(gen_config(tmp_path, data, tiny_llama, epochs=2), budget="3m")
    result = run_pipeline(load_config(data=config))
    budget = json.loads((result.run_dir / "budget.json").read_text())
    decisions = {d["decision"]: d for d in budget["decisions"]}
    assert decisions["ends by the clock"]["stage"] == "train"
    assert "up to the recipe's" in decisions["ends by the clock"]["reason"]
    train = result.artifacts["train"]
    history = train.json("history")
    # A tiny set: the recipe's steps end the fit long before the clock, evaluated at the end.
    assert history[-1]["step"] == train.metrics["steps"] and any("eval_loss" in h for h in history)
    assert budget["elapsed_seconds"] < 180
    html = result.artifacts["report"].path("report.html").read_text()
    assert "Time budget" in html and "ends by the clock" in html and "180 s for the whole run" in html
