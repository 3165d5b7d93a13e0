"""The YAML config as pydantic models: validated once, at load, with every problem named.

Each stage reads one section. `extra="forbid"` everywhere, so a typo is an error that
names its key path instead of a silently ignored setting.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from lmforge.budget_text import MAX_BUDGET_MINUTES, MIN_BUDGET_MINUTES, minutes_problem, parse_minutes
from lmforge.errors import ConfigError
from lmforge.tasks.base import Task
from lmforge.tasks.registry import TASKS, get_task, task_names

if TYPE_CHECKING:
    TaskName = str
else:  # the registered task names: the schema lists them, a wrong one is a literal error
    TaskName = Literal[task_names()]


def _task_choices() -> str:
    """The registered tasks for the schema: "`a` (what), `b` (what) or `c` (what)."."""
    named = [f"`{task.name}` ({task.description})" for task in TASKS.values()]
    return (", ".join(named[:-1]) + " or " + named[-1] if len(named) > 1 else named[0]) + "."


class KeyedProblems(ValueError):
    """Problems of sub-keys of a dict-valued field, each "key: problem"; reported one per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _auto_or(kind: Any) -> BeforeValidator:
    """Accept `auto`, else validate as `kind` with one error message (a plain union would
    report one problem per branch: `train.epochs.constrained-float`, `...literal['auto']`)."""
    adapter: TypeAdapter[Any] = TypeAdapter(kind)

    def check(value: Any) -> Any:
        if value == "auto":
            return value
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            err = exc.errors()[0]
            ctx = err.get("ctx") or {}
            if err["type"] in _BOUNDS:
                symbol, name = _BOUNDS[err["type"]]
                message = f"must be {symbol} {ctx.get(name)}"
            else:
                message = err["msg"][0].lower() + err["msg"][1:]
            raise ValueError(f"{message} (or 'auto'), got {value!r}") from None

    return BeforeValidator(check)


PositiveFloat = Annotated[float, Field(gt=0)]
AutoPositiveFloat = Annotated[PositiveFloat | Literal["auto"], _auto_or(PositiveFloat)]
# The longest context of common open models (128k tokens); a larger max_length is a typo.
MAX_LENGTH_CEILING = 131_072
_Length = Annotated[int, Field(ge=8, le=MAX_LENGTH_CEILING)]
AutoLength = Annotated[_Length | Literal["auto"], _auto_or(_Length)]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, defaults are validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)


class DataConfig(Section):
    train: str = Field(description="Training data file (CSV, JSONL or Parquet), relative to the config file.")
    validation: str | None = Field(None, description="Optional validation file; otherwise split from train.")
    test: str | None = Field(None, description="Optional test file; otherwise split from train.")
    text_column: str = Field("text", description="Column holding the input text.")
    label_column: str = Field("label", description="Column holding the class label.")
    instruction_column: str = Field(
        "instruction", description="Generation: column with the instruction (Alpaca-style rows)."
    )
    input_column: str = Field(
        "input", description="Generation: optional column with the instruction's input."
    )
    output_column: str = Field("output", description="Generation: column with the expected answer.")
    prompt_column: str = Field("prompt", description="Generation: prompt column (prompt/response rows).")
    response_column: str = Field(
        "response", description="Generation: response column (prompt/response rows)."
    )
    messages_column: str = Field(
        "messages",
        description="Generation: column of chat messages (lists of {role, content}; the last is the answer).",
    )
    system_prompt: str | None = Field(
        None, description="Generation: system message put before every instruction or prompt."
    )
    format: Literal["auto", "csv", "jsonl", "parquet", "txt"] = Field(
        "auto",
        description=(
            "File format; `auto` guesses from the extension. `txt` (language-modeling): "
            "paragraphs separated by blank lines are the rows."
        ),
    )
    encoding: str = Field(
        "auto",
        description="Text encoding of CSV/JSONL files; `auto` detects it (UTF-8 first).",
    )

    @model_validator(mode="after")
    def _label_apart_from_text(self) -> DataConfig:
        # One column cannot be both: every text would be its own class.
        if self.text_column == self.label_column:
            raise KeyedProblems(
                [
                    f"label_column: names the same column as data.text_column ('{self.text_column}'); "
                    "the label must come from another column"
                ]
            )
        return self


class ValidateConfig(Section):
    min_rows_per_class: int = Field(
        5, ge=1, description="A class with fewer valid rows than this is an error."
    )
    max_rejected_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Fail when more than this fraction of rows is rejected (likely a wrong column).",
    )


PiiType = Literal["email", "phone", "card", "iban", "ip", "url"]
DEFAULT_PII_TYPES: tuple[PiiType, ...] = ("email", "phone", "card", "iban", "ip")


class CleanConfig(Section):
    enabled: bool = Field(True, description="Run the cleaning steps below; false passes rows through.")
    fix_unicode: bool = Field(True, description="Repair mojibake and odd Unicode with ftfy.")
    normalize_whitespace: bool = Field(
        True,
        description=(
            "Remove control characters and collapse runs of whitespace "
            "(generation and language-modeling keep whitespace: false)."
        ),
    )
    strip_html: bool = Field(False, description="Remove HTML tags and decode entities.")
    min_chars: int = Field(
        1,
        ge=0,
        description="Drop texts shorter than this many characters after repair (generation: prompt, answer).",
    )
    max_chars: int | None = Field(None, ge=1, description="Drop texts longer than this; null: no limit.")
    min_tokens: int = Field(0, ge=0, description="Drop texts with fewer whitespace-separated tokens.")
    max_tokens: int | None = Field(
        None, ge=1, description="Drop texts with more whitespace-separated tokens; null: no limit."
    )
    exact_duplicates: bool = Field(
        True,
        description="Drop rows whose normalised text (case, punctuation, spacing) repeats an earlier row.",
    )
    near_duplicates: bool = Field(True, description="Drop near-copies found by MinHash LSH.")
    near_duplicate_threshold: float = Field(
        0.85,
        ge=0.5,
        le=1,
        description="Jaccard similarity of character 5-grams that makes a near-copy (below 0.5 gets slow).",
    )
    conflicts: Literal["majority", "drop", "keep"] = Field(
        "majority",
        description=(
            "Duplicates whose labels disagree: `majority` keeps one row with the majority label "
            "(drops the group on a tie), `drop` drops the group, `keep` keeps every row. "
            "Always listed in conflicts.csv. Generation: duplicate prompts whose answers differ."
        ),
    )
    pii: Literal["mask", "drop", "off"] = Field(
        "mask", description="Personal data: replace with typed placeholders, drop the row, or leave it."
    )
    pii_types: list[PiiType] = Field(
        default_factory=lambda: list(DEFAULT_PII_TYPES),
        description="Kinds of personal data to detect. Person names are not detected (no offline model).",
    )
    phone_region: str = Field(
        "US", min_length=2, max_length=2, description="Region for phone numbers written without +country."
    )
    keep_raw_pii: bool = Field(
        False,
        description=(
            "Keep the raw texts in the ingest and validate artifacts and mask them only in the clean "
            "stage (changed.csv then shows the raw `before`). Default false: personal data is masked "
            "as the files are read, so no artifact, manifest or report holds it."
        ),
    )
    label_noise: Literal["flag", "drop", "off"] = Field(
        "flag",
        description=(
            "Likely wrong labels (cleanlab, out-of-fold probabilities): list, drop, or skip them "
            "(classification; off for the other tasks)."
        ),
    )
    label_noise_model: Literal["tfidf", "embeddings"] = Field(
        "tfidf", description="Fast model for out-of-fold probabilities: TF-IDF or minilm-l6 embeddings + LR."
    )
    label_noise_probe: Literal["auto", "full", "fast"] = Field(
        "auto",
        description=(
            "Cost of the label-noise check's TF-IDF probe: `full` (10 folds, saga logistic regression), "
            "`fast` (5 folds, one vocabulary, SGD logistic regression; ~10x faster on emotion and "
            "banking77, recall within a point or higher, precision up to 5 points lower), `auto` (fast "
            "from 20,000 train rows). The choice and why are in the report."
        ),
    )

    @field_validator("pii", "label_noise", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false; the user meant the string.
        return "off" if value is False else value


def _clean_problems(task: str, clean: CleanConfig) -> list[str]:
    """Causal tasks keep whitespace (newlines) and have no labels: those `clean` keys default
    to what the task does, and any other value is an error. A key set to what the task does
    anyway is fine, so a resolved config (every default written out) loads back."""
    given = clean.model_fields_set
    problems = []
    if "normalize_whitespace" not in given:
        clean.normalize_whitespace = False
    elif clean.normalize_whitespace:
        problems.append(f"clean.normalize_whitespace: {task} keeps whitespace (newlines); set it to false")
    if "label_noise" not in given:
        clean.label_noise = "off"
    elif clean.label_noise != "off":
        problems.append(f"clean.label_noise: {task} rows have no labels to check; set it to off")
    if task == "language-modeling" and clean.conflicts != "majority":
        problems.append("clean.conflicts: language-modeling texts have no answers to conflict; remove it")
    return problems


class LabelConfig(Section):
    enabled: bool = Field(
        True, description="Label rows without a label; false rejects them as `missing label`."
    )
    unlabeled: str | None = Field(
        None, description="Optional file of unlabelled texts (same text column), relative to the config file."
    )
    method: Literal["auto", "embeddings", "zero-shot"] = Field(
        "auto",
        description=(
            "`embeddings`: logistic regression on minilm-l6 sentence embeddings of the labelled rows; "
            "`zero-shot`: prompt a causal LM with the label names; `auto`: embeddings when every class "
            "has `min_examples_per_class` labelled rows, else zero-shot."
        ),
    )
    labels: list[str] | None = Field(
        None, description="Label names for zero-shot labelling when the data has few or no labels."
    )
    min_examples_per_class: int = Field(
        5, ge=1, description="`auto` picks embeddings at this many per class."
    )
    min_confidence: float = Field(
        0.7, ge=0, le=1, description="Auto-labels below this confidence go to the review queue."
    )
    low_confidence: Literal["exclude", "keep"] = Field(
        "exclude",
        description="Train on low-confidence auto-labels (`keep`) or hold them back until reviewed.",
    )
    reviewed: str = Field(
        "reviewed_labels.csv",
        description="Answers written by `lmforge review`, read by the next run (relative to the config).",
    )
    embedding_model: str = Field("minilm-l6", description="Encoder for the embeddings method.")
    generator_model: str = Field("smollm2-135m", description="Causal LM for the zero-shot method.")


class AugmentConfig(Section):
    oversample: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Oversample each class up to this fraction of the largest class; null: off.",
    )
    token_edits: int = Field(0, ge=0, le=10, description="Variants per row by word swap/delete/insert.")
    paraphrases: int = Field(0, ge=0, le=5, description="Paraphrases per row generated by `model`.")
    max_paraphrases: int = Field(200, ge=1, description="Cap on generated paraphrases (slow on CPU).")
    model: str = Field("smollm2-135m", description="Causal LM that writes the paraphrases.")
    seed: int = Field(0, description="Seed of sampling and edits.")


class SplitConfig(Section):
    validation: float = Field(0.1, gt=0, lt=1, description="Fraction of rows for validation.")
    test: float = Field(
        0.1, gt=0, lt=1, description="Fraction of rows for test (ignored when data.test is given)."
    )
    seed: int = Field(42, description="Seed of the stratified split.")
    remove_leakage: bool = Field(
        True, description="Drop train rows that duplicate (exactly or nearly) a validation or test row."
    )
    leakage_threshold: float = Field(
        0.85,
        ge=0.5,
        le=1,
        description="Similarity (as clean.near_duplicate_threshold) that counts as leakage.",
    )

    @model_validator(mode="after")
    def _leave_rows_for_training(self) -> SplitConfig:
        if self.validation + self.test >= 0.9:
            raise ValueError(
                f"validation + test must be < 0.9 to leave rows for training, "
                f"got {self.validation} + {self.test}"
            )
        return self


class BaselineConfig(Section):
    enabled: bool = Field(True, description="Fit majority-class and TF-IDF + logistic regression.")
    max_features: int = Field(50_000, ge=100, description="TF-IDF vocabulary size.")
    ngram_max: int = Field(2, ge=1, le=3, description="Largest word n-gram of the TF-IDF features.")


class TrainConfig(Section):
    method: Literal["full", "lora", "freeze"] = Field(
        "full",
        description=(
            "`full` trains every weight; `lora` trains low-rank adapters (peft) and the head; "
            "`freeze` trains only the top `trainable_layers` blocks (and the head). Generation and "
            "language-modeling default to `lora`."
        ),
    )
    trainable_layers: int = Field(2, ge=1, description="`method: freeze`: how many top blocks train.")
    lora_r: int = Field(8, ge=1, le=256, description="LoRA rank.")
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA branch.")
    lora_target_modules: list[str] | None = Field(
        None,
        description="Modules that get adapters; null: peft's default for the architecture (attention q/v).",
    )
    pooling: Literal["auto", "mean", "default"] = Field(
        "auto",
        description=(
            "Classification head input: `mean` of the token states (how sentence-transformers "
            "checkpoints were trained), `default` (the architecture's own head: BERT's [CLS] pooler, "
            "a causal LM's last token); `auto`: what the zoo or the model folder records, else `default`."
        ),
    )
    epochs: AutoPositiveFloat = Field(
        "auto",
        description=(
            "Training epochs (may be fractional); `auto`: enough passes for a minimum number of "
            "optimizer steps on small data, fewer on large data (the report shows the numbers)."
        ),
    )
    max_steps: int = Field(
        -1, ge=-1, description="Stop after this many optimizer steps; -1 trains for `epochs`."
    )
    learning_rate: AutoPositiveFloat = Field(
        "auto",
        description="Peak learning rate (AdamW); `auto`: the measured default for the model and method.",
    )
    batch_size: int = Field(
        32,
        ge=1,
        description=(
            "Training batch size; on Ray Train the global batch, split evenly over the workers. "
            "Generation and language-modeling default to 4."
        ),
    )
    eval_batch_size: int = Field(
        64, ge=1, description="Batch size for validation (generation and language-modeling: 8)."
    )
    max_length: AutoLength = Field(
        "auto",
        description=(
            "Texts are truncated to this many tokens; `auto`: the 99th percentile of the train "
            "split's token lengths, rounded up to a multiple of 8, capped by the model. At most "
            "131072; a value above the model's own limit is capped to it (the report says so)."
        ),
    )
    class_weights: Literal["auto", "none", "balanced"] = Field(
        "auto",
        description=(
            "Weight the loss by inverse class frequency (`balanced`) so rare classes are learned "
            "early; `auto`: balanced when the rarest class holds under half its even share of rows."
        ),
    )
    group_by_length: bool = Field(
        True,
        description="Batch texts of similar length together (less padding, faster steps); false: random.",
    )
    lr_scheduler: Literal["linear", "cosine", "constant_with_warmup"] = Field(
        "linear", description="Learning-rate schedule after warmup."
    )
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Fraction of steps of LR warmup.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Batches per optimizer step.")
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, ~30% slower."
    )
    packing: bool = Field(
        False,
        description="Generation / language-modeling: join examples into full `max_length` blocks.",
    )
    long_examples: Literal["truncate", "drop"] = Field(
        "truncate",
        description="Generation: examples over `max_length` are cut at the right, or left out (counted).",
    )
    early_stopping_patience: int | None = Field(
        2, ge=1, description="Evaluations without improvement before stopping; null disables."
    )
    metric_for_best_model: Literal["f1_macro", "f1_weighted", "accuracy", "loss"] = Field(
        "f1_macro", description="Validation metric that picks the best checkpoint."
    )
    eval_steps: int | None = Field(
        None, ge=1, description="Evaluate (and checkpoint) every N steps; null: once per epoch."
    )
    logging_steps: int = Field(10, ge=1, description="Log the training loss every N steps.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="`auto`: on a GPU that supports bf16, bf16 for models of 300M parameters or "
        "more and fp32 below (small models train faster in fp32: measured on an H200); fp32 on a CPU.",
    )
    seed: int = Field(42, description="Seed of weight init, shuffling and dropout.")
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="Label smoothing of the cross-entropy loss (0 disables)."
    )
    dropout: float | None = Field(
        None, ge=0, lt=1, description="Override the model's dropout probabilities; null keeps them."
    )
    freeze_embeddings: bool = Field(False, description="Keep the token embeddings frozen.")
    freeze_layers: int = Field(
        0, ge=0, description="Freeze the embeddings and the bottom N transformer layers (0: train all)."
    )
    adversarial: Literal["off", "fgm"] = Field(
        "off", description="Adversarial training on the word embeddings (FGM: one extra backward per step)."
    )
    adversarial_epsilon: float = Field(1.0, gt=0, description="Size of the FGM perturbation.")
    max_restarts: int = Field(
        2,
        ge=0,
        description="Restarts from the last good checkpoint after a NaN/inf or exploding loss.",
    )
    restart_lr_factor: float = Field(
        0.5, gt=0, lt=1, description="Each restart multiplies the learning rate by this factor."
    )
    explode_factor: float = Field(
        10.0,
        gt=1,
        description="A smoothed loss this many times above its lowest value so far counts as exploding.",
    )

    @field_validator("adversarial", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value

    def tuned(self, params: dict[str, Any]) -> TrainConfig:
        """This section with a study's best `params`, validated (optuna's int `epochs` becomes
        the float the field holds; `model_copy` would keep the int and warn when serialised)."""
        return type(self).model_validate({**self.model_dump(), **params})


# Train keys a study may search, with the type optuna suggests for a numeric range.
TUNABLE: dict[str, type] = {
    "learning_rate": float,
    "epochs": int,
    "batch_size": int,
    "weight_decay": float,
    "warmup_ratio": float,
    "label_smoothing": float,
    "dropout": float,
    "freeze_layers": int,
    "gradient_accumulation_steps": int,
    "max_length": int,
    "adversarial_epsilon": float,
    "lora_r": int,
    "lora_alpha": int,
    "lora_dropout": float,
}


class ParamRange(Section):
    """One search-space entry: a numeric range (`low`, `high`, optional `log`/`step`) or `choices`."""

    low: float | None = Field(None, description="Lower bound (inclusive).")
    high: float | None = Field(None, description="Upper bound (inclusive).")
    log: bool = Field(False, description="Sample on a log scale (bounds must be > 0).")
    step: float | None = Field(None, gt=0, description="Grid step inside the range.")
    choices: list[Any] | None = Field(None, min_length=1, description="Pick one of these values.")

    @model_validator(mode="after")
    def _range_or_choices(self) -> ParamRange:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("needs low and high (or choices)")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0, got {self.low}")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        return self


class TuneConfig(Section):
    enabled: bool = Field(False, description="Search hyperparameters with optuna before training.")
    trials: int | None = Field(
        20, ge=1, description="Number of finished (complete or pruned) trials; null: until the timeout."
    )
    timeout_minutes: float | None = Field(
        None, gt=0, description="Stop starting new trials after this long; null: no time limit."
    )
    sampler: Literal["tpe", "random"] = Field("tpe", description="optuna sampler.")
    pruner: Literal["median", "hyperband", "successive_halving", "none"] = Field(
        "successive_halving",
        description=(
            "Stops unpromising trials at their validation evaluations: successive_halving (ASHA: "
            "only the top third goes on at evaluations r, 3r, 9r ..., r = prune_after + 1; the "
            "most aggressive), median (below the median of earlier trials) or hyperband."
        ),
    )
    prune_on: Literal["metric", "loss"] = Field(
        "loss",
        description=(
            "What each evaluation reports to the pruner: the validation loss (smoother than a "
            "metric early on, when a classifier still predicts one class), or "
            "train.metric_for_best_model. The best trial is chosen by the metric either way."
        ),
    )
    startup_trials: int = Field(
        5, ge=0, description="Trials sampled at random (TPE) and never pruned (median) at the start."
    )
    prune_after: int = Field(
        1,
        ge=0,
        description="Validation evaluations a trial gets before it may be pruned (early scores mislead).",
    )
    storage: str | None = Field(
        None,
        description=(
            "optuna storage URL (e.g. postgresql://...); null: a sqlite file in the run's work "
            "folder, so a killed study resumes when the run is repeated."
        ),
    )
    space: dict[str, ParamRange] | None = Field(
        None,
        description=(
            "Search space keyed by `train` keys; null: learning_rate, epochs, batch_size, "
            "weight_decay and warmup_ratio with defaults for the task."
        ),
    )
    max_train_rows: int | None = Field(
        None, ge=10, description="Train each trial on a stratified sample of this many rows; null: all."
    )
    ensemble_top_k: int = Field(
        1,
        ge=1,
        le=10,
        description=(
            "Keep the k best trials' models and use their averaged probabilities when that beats "
            "the single best on validation (1: off)."
        ),
    )
    seed: int = Field(0, description="Seed of the sampler.")

    @field_validator("space")
    @classmethod
    def _tunable_keys(cls, space: dict[str, ParamRange] | None) -> dict[str, ParamRange] | None:
        # Every problem names its key, e.g. `tune.space.lerning_rate: ...`.
        problems = []
        for key, spec in (space or {}).items():
            if key not in TUNABLE:
                close = difflib.get_close_matches(key, TUNABLE, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                problems.append(f"{key}: not a tunable train key; {hint}tunable: {', '.join(TUNABLE)}")
                continue
            values: list[Any] = spec.choices if spec.choices is not None else [spec.low, spec.high]
            if (
                TUNABLE[key] is int
                and spec.choices is None
                and not all(float(v).is_integer() for v in values)
            ):
                problems.append(f"{key}: bounds must be whole numbers, got {values}")
                continue
            for value in values:
                try:
                    TrainConfig.model_validate({key: value})
                except ValidationError as exc:
                    problems.append(f"{key}: {value!r} is not a valid train.{key} ({exc.errors()[0]['msg']})")
        if problems:
            raise KeyedProblems(problems)
        return space

    @model_validator(mode="after")
    def _budget(self) -> TuneConfig:
        if self.trials is None and self.timeout_minutes is None:
            raise ValueError("set trials, timeout_minutes or both; otherwise the study never ends")
        return self


class SelectConfig(Section):
    max_params: float | None = Field(
        None, gt=0, description="Skip candidates with more parameters than this (e.g. 50e6)."
    )
    max_latency_ms: float | None = Field(
        None, gt=0, description="Skip candidates slower than this per text (batch of 1, measured here)."
    )
    time_budget_minutes: float | None = Field(
        None,
        gt=0,
        description="Skip candidates whose full fine-tune is estimated (from measured speed) to take longer.",
    )
    probe: Literal["embeddings", "finetune"] = Field(
        "embeddings",
        description=(
            "Score each candidate by logistic regression on its frozen mean-pooled hidden states, "
            "or by a short fine-tune on a sample."
        ),
    )
    probe_rows: int = Field(1000, ge=20, description="Train rows (stratified sample) used by the probe.")
    probe_steps: int = Field(60, ge=1, description="Optimizer steps of the `finetune` probe.")
    latency_texts: int = Field(16, ge=1, description="Texts timed one at a time to measure latency.")


# Most candidate fits a count-based budget may spend; more is a typo, not a plan.
MAX_BUDGET_TRIALS = 1000


class BudgetConfig(Section):
    """A hard time budget for the whole run, or a reproducible count of candidate fits."""

    minutes: float | None = Field(
        None,
        description=(
            "Wall-clock budget of the whole run, ingest to register (export and report included): "
            "minutes, or a duration like 90s, 2h, 1h30m. At least "
            f"{MIN_BUDGET_MINUTES:g}, at most {MAX_BUDGET_MINUTES:g} (7 days). With a pinned "
            "`model` it cuts epochs; with `model: auto` it decides which candidates run. "
            "`budget: 15m` is short for `budget: {minutes: 15}`; `lmforge run --budget` overrides it."
        ),
    )
    trials: int | None = Field(
        None,
        ge=1,
        le=MAX_BUDGET_TRIALS,
        description=(
            "Count-based, reproducible mode: how many candidate fits the portfolio may spend. "
            "Decisions depend on counts, never on measured time, so the same data and seed give the "
            "same model on any machine. Implies `deterministic`."
        ),
    )
    deterministic: bool = Field(
        False,
        description=(
            "Take every decision by counts even with `minutes` set: the count is `trials`, or "
            "derived from `minutes` by fixed cost figures instead of this machine's measured speed. "
            "`minutes` stays a hard stop: a slow machine may be cut short (the report says so), "
            "but never picks a different model because it was slow."
        ),
    )

    @field_validator("minutes", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_minutes(value, _BUDGET_EXAMPLES)

    @model_validator(mode="after")
    def _bounds(self) -> BudgetConfig:
        problems = []
        if self.minutes is not None and (
            problem := minutes_problem(self.minutes, "minutes", write="budget.minutes: {n}")
        ):
            problems.append(problem)
        if self.deterministic and self.minutes is None and self.trials is None:
            problems.append("deterministic: needs budget.minutes or budget.trials to count against")
        if problems:
            raise KeyedProblems(problems)
        return self

    @property
    def enabled(self) -> bool:
        """Whether the run has a budget at all (time or count)."""
        return self.minutes is not None or self.trials is not None

    @property
    def seconds(self) -> float | None:
        """The wall-clock budget in seconds; None without `minutes`."""
        return None if self.minutes is None else self.minutes * 60

    @property
    def count_based(self) -> bool:
        """Whether decisions follow counts (reproducible) rather than measured time."""
        return self.trials is not None or self.deterministic


_BUDGET_EXAMPLES = "write 90s, 15m, 2h or {minutes: 15}"


def _budget_shorthand(value: Any) -> Any:
    """`budget: 15m` / `budget: 15` / `budget: null` as the section they stand for."""
    if value is None:
        return {}
    if isinstance(value, dict | BudgetConfig):
        return value
    return {"minutes": parse_minutes(value, _BUDGET_EXAMPLES)}


BudgetField = Annotated[
    BudgetConfig, BeforeValidator(_budget_shorthand, json_schema_input_type=BudgetConfig | str | float | None)
]


GateMetric = Literal["f1_macro", "f1_weighted", "accuracy", "rouge_l", "exact_match", "perplexity"]


class GateConfig(Section):
    enabled: bool = Field(True, description="Check the model before it may become the champion.")
    metric: GateMetric = Field(
        "f1_macro",
        description=(
            "Test-set metric compared with the baseline and the champion; generation defaults to "
            "rouge_l, language-modeling to perplexity (lower is better)."
        ),
    )
    min_gain: float = Field(
        0.0,
        description=(
            "Required gain of `metric` over the best baseline (TF-IDF; the base model for generation); "
            "for perplexity, the required drop. May be negative."
        ),
    )
    min: dict[GateMetric | Literal["precision_macro", "recall_macro", "rouge1", "rouge2", "bleu"], float] = (
        Field(
            default_factory=dict,
            description="Absolute test-set thresholds, e.g. {f1_macro: 0.8}; perplexity is a ceiling.",
        )
    )
    champion_tolerance: float = Field(
        0.0, ge=0, description="How much worse than the current champion (same test set) still passes."
    )
    required: bool = Field(
        False,
        description="`lmforge run` exits non-zero when the gate fails (the model is still a challenger).",
    )


class ExecutorConfig(Section):
    type: Literal["local", "ray"] = Field(
        "local",
        description="`ray`: tuning trials run as Ray tasks, the clean and label stages' per-row work "
        "as Ray Data blocks, `lmforge predict --ray` on Ray Data, and with `train_workers` the train "
        "stage on Ray Train. `local`: all in this process.",
    )
    address: str | None = Field(
        None,
        description=(
            "Ray cluster address (`ray start --head` prints it); null: $RAY_ADDRESS when set, "
            "else a Ray of its own on this machine."
        ),
    )
    num_cpus: float = Field(1, gt=0, description="CPUs reserved per trial (Ray).")
    num_gpus: float = Field(0, ge=0, description="GPUs reserved per trial (Ray).")
    max_concurrent: int | None = Field(
        None, ge=1, description="Trials in flight at once (Ray); null: as many as the resources allow."
    )
    train_workers: int = Field(
        0,
        ge=0,
        description=(
            "With type ray: data-parallel workers of the train stage on Ray Train (a TorchTrainer "
            "around the same Trainer code; gloo on CPU, NCCL on GPU); 0: train in this process."
        ),
    )
    use_gpu: bool = Field(False, description="Ray Train: one GPU per train worker.")
    cpus_per_worker: float = Field(1, gt=0, description="Ray Train: CPUs reserved per train worker.")
    storage_path: str | None = Field(
        None,
        description=(
            "Ray Train: where checkpoints go, a folder or URI every node reaches (s3://, gs://, "
            "a shared mount); null: the train stage's work folder (one machine)."
        ),
    )
    max_failures: int = Field(
        2, ge=0, description="Ray Train: worker failures survived by restarting from the last checkpoint."
    )


class EvaluateConfig(Section):
    batch_size: int = Field(64, ge=1, description="Batch size for test-set inference.")
    worst_errors: int = Field(20, ge=0, description="How many most-confidently-wrong test examples to list.")
    generation_rows: int = Field(
        64, ge=0, description="Generation: test prompts answered by the models and scored (CPU is slow)."
    )
    max_new_tokens: int = Field(64, ge=1, description="Generation: longest answer generated, in tokens.")
    perplexity_rows: int | None = Field(
        None,
        ge=1,
        description=(
            "Generation / language-modeling: test rows the perplexity pass reads (the first N, as "
            "`generation_rows` takes the first N prompts); null: every row. Under a budget lmforge "
            "lowers it (and `generation_rows`) when scoring the base and the fine-tuned model on every "
            "test row would take over a quarter of the budget, and says so."
        ),
    )
    max_length: int = Field(
        512,
        ge=16,
        description="Generation / language-modeling: tokens per test sequence for perplexity and prompts.",
    )
    do_sample: bool = Field(False, description="Generation: sample instead of greedy decoding.")
    temperature: float = Field(0.7, gt=0, description="Generation: sampling temperature (with do_sample).")
    top_p: float = Field(0.9, gt=0, le=1, description="Generation: nucleus sampling mass (with do_sample).")
    samples: int = Field(8, ge=0, description="Generation: sample answers shown in the report.")
    cv_folds: int | None = Field(
        None,
        ge=2,
        le=20,
        description=(
            "Also estimate the metric by k-fold cross-validation over train + validation (small data); "
            "null: off."
        ),
    )


class ExportConfig(Section):
    onnx: bool = Field(
        True,
        description=(
            "Classification: write the model as ONNX (fp32), checked against torch on the test set (the "
            "model card is written either way); "
            "`lmforge serve` prefers it."
        ),
    )
    int8: bool = Field(
        True, description="Classification: also write an int8 dynamically quantized ONNX graph (~4x smaller)."
    )
    opset: int = Field(17, ge=14, le=21, description="ONNX opset version.")
    onnx_max_logit_diff: float = Field(
        1e-3,
        gt=0,
        description=(
            "Fail the export when fp32 ONNX and torch logits differ by more (linear models and "
            "ensembles: their served probabilities vs in-process ones)."
        ),
    )
    max_accuracy_drop: float = Field(
        0.02,
        ge=0,
        description="Ship the int8 graph only when its test accuracy is at most this much below torch's.",
    )
    gguf: bool = Field(
        True,
        description=(
            "Generation / language-modeling: also write the merged model as one GGUF file "
            "(llama.cpp, Ollama; llama architectures) and check it against the folder's logits."
        ),
    )
    gguf_dtype: Literal["f16", "f32"] = Field("f16", description="Weight type of the GGUF file.")
    max_logit_diff: float = Field(
        0.1,
        gt=0,
        description="Fail the export when GGUF and folder logits differ by more (f16 rounding stays below).",
    )


class TrackingConfig(Section):
    enabled: bool = Field(True, description="Log params, metrics and artifacts to MLflow.")
    uri: str = Field(
        "sqlite:///mlruns.db",
        description="MLflow tracking URI; a relative sqlite path is relative to the config file.",
    )
    tensorboard: bool = Field(True, description="Write TensorBoard logs during training.")


class RegisterConfig(Section):
    enabled: bool = Field(True, description="Register the trained model in the MLflow registry.")
    model_name: str | None = Field(None, description="Registered model name; defaults to `project`.")


class ServeConfig(Section):
    """`lmforge serve`: read from the config given with `--config`; flags override."""

    host: str = Field(
        "127.0.0.1", description="Interface to bind; 0.0.0.0 exposes the server to the network."
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port.")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes (each loads the model).")
    runtime: Literal["auto", "onnx", "torch"] = Field(
        "auto", description="Classification: the exported ONNX graph when there is one (auto), or torch."
    )
    threads: int | None = Field(None, ge=1, description="Intra-op threads per worker; default: all cores.")
    max_batch_size: int = Field(32, ge=1, le=1024, description="Most texts per model call (micro-batching).")
    max_wait_ms: float = Field(
        5.0, ge=0, le=1000, description="Longest a text waits for others to batch with."
    )
    max_queue: int = Field(
        1024, ge=1, description="Texts waiting for the model before new requests get 503 (bounded memory)."
    )
    max_texts: int = Field(64, ge=1, description="Most texts in one /v1/classify request (413 above).")
    max_chars: int = Field(10_000, ge=1, description="Longest text or prompt in characters (413 above).")
    max_new_tokens: int = Field(512, ge=1, description="Most tokens a completion may ask for (422 above).")
    max_generations: int = Field(
        8, ge=1, description="Generation requests waiting or running before new ones get 503."
    )
    log_inputs: bool = Field(
        False,
        description="Store the request texts (PII-masked) with each logged prediction; off: hashes only.",
    )
    state_dir: str = Field(
        "lmforge-state",
        description="API keys, downloaded models and drift reports, relative to the current folder.",
    )
    feedback_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the prediction log and feedback store; default sqlite in state_dir.",
    )
    keys_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL of the API keys and audit log (e.g. PostgreSQL shared by several hosts); "
            "default sqlite keys.db in state_dir."
        ),
    )
    rate_limits: Literal["auto", "shared", "process"] = Field(
        "auto",
        description=(
            "Where per-key token buckets live: shared (the keys database, so a key's rate holds across "
            "workers and hosts; ~0.4 ms per limited request on SQLite), process (memory: exact for one "
            "worker, N times the rate with N workers); auto: shared with workers > 1 or keys_url set."
        ),
    )
    reload_seconds: float = Field(
        30.0, ge=0, description="How often to check the registry for a new champion (0: never; hot swap)."
    )
    metrics_public: bool = Field(False, description="Serve /metrics without a key (for an internal scraper).")
    max_body_bytes: int = Field(
        1_048_576,
        ge=1,
        description=(
            "Largest request body in bytes (413 above), refused before it is read or parsed; "
            "64 ASCII texts of max_chars fit in the default, long non-ASCII batches may need more."
        ),
    )
    public_docs: bool | None = Field(
        None,
        description=(
            "Serve /docs, /redoc and /openapi.json (without a key); off: those routes do not exist. "
            "Default: on only when host is a loopback address."
        ),
    )


class UiConfig(Section):
    """`lmforge ui`: how long a login lasts, and what the server believes about the proxy in front."""

    idle_minutes: float = Field(
        30.0, gt=0, le=7 * 24 * 60, description="A UI session ends after this many minutes without a request."
    )
    session_hours: float = Field(
        12.0, gt=0, le=30 * 24, description="A UI session ends this many hours after login, however active."
    )
    secure_cookies: Literal["auto", "always", "never"] = Field(
        "auto",
        description=(
            "Mark the UI's cookies Secure (sent over HTTPS only): auto when the request came over https "
            "(TLS at the server, or X-Forwarded-Proto from a trusted proxy), always, or never."
        ),
    )
    trusted_proxies: list[str] = Field(
        ["127.0.0.1", "::1"],
        description=(
            "Peer addresses whose X-Forwarded-Proto and X-Forwarded-Host the UI believes (a TLS proxy "
            "in front of it); `*` trusts every peer, [] none."
        ),
    )


class Config(Section):
    """A whole lmforge run. The YAML file mirrors this model key for key."""

    project: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Names the MLflow experiment and registered model; defaults to the data file's name.",
    )
    task: TaskName = Field(
        "classification",
        description=_task_choices(),
    )
    data: DataConfig = Field(description="Where the data is and which columns to use.")
    validate_: ValidateConfig = Field(
        default_factory=ValidateConfig, alias="validate", description="Data checks."
    )
    clean: CleanConfig = Field(
        default_factory=CleanConfig, description="Text repair, duplicates, PII, label noise."
    )
    label: LabelConfig = Field(default_factory=LabelConfig, description="Auto-labelling and human review.")
    split: SplitConfig = Field(default_factory=SplitConfig, description="Train/validation/test split.")
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig, description="Class balance and augmentation of the train split."
    )
    baseline: BaselineConfig = Field(default_factory=BaselineConfig, description="Simple baselines.")
    model: str | list[str] = Field(
        "minilm-l6",
        description=(
            "A zoo name, a local Hugging Face folder or .gguf file, or a hub id; a list of candidates "
            "or `auto` (every zoo model for the task) lets the `select` stage pick one."
        ),
    )
    select: SelectConfig = Field(default_factory=SelectConfig, description="Model selection (model: auto).")
    budget: BudgetField = Field(
        default_factory=BudgetConfig,
        description="Time budget of the whole run (`budget: 15m`) or a reproducible count of candidate fits.",
    )
    tune: TuneConfig = Field(default_factory=TuneConfig, description="Hyperparameter search.")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig, description="Where trials run.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Fine-tuning settings.")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="Test-set evaluation.")
    gate: GateConfig = Field(default_factory=GateConfig, description="Quality gate before the registry.")
    export: ExportConfig = Field(default_factory=ExportConfig, description="Exported model files.")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="MLflow tracking.")
    register_: RegisterConfig = Field(
        default_factory=RegisterConfig, alias="register", description="Model registry."
    )
    serve: ServeConfig = Field(default_factory=ServeConfig, description="Model server (`lmforge serve`).")
    ui: UiConfig = Field(default_factory=UiConfig, description="Web UI (`lmforge ui`): sessions and cookies.")
    output_dir: str = Field("runs", description="Folder of run folders, relative to the config file.")

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @model_validator(mode="after")
    def _default_project(self) -> Config:
        if self.project is None:
            stem = Path(self.data.train).stem or "lmforge"
            self.project = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem)
        return self

    @model_validator(mode="after")
    def _task_defaults(self) -> Config:
        """Defaults that depend on the task; an explicit value the task cannot use is an error."""
        task = self.task_def
        if "model" not in self.model_fields_set:
            self.model = task.default_model
        for path, value in task.defaults.items():
            section, key = path.split(".")
            model = self.section_model(section)
            if key not in model.model_fields_set:
                setattr(model, key, value)
        if "metric" not in self.gate.model_fields_set:
            self.gate.metric = task.gate_metric  # type: ignore[assignment]  # a GateMetric by test_tasks
        problems = _task_problems(self, task)
        if not task.uses_labels:
            problems += _clean_problems(self.task, self.clean)
        if problems:
            raise KeyedProblems(problems)
        return self

    @model_validator(mode="after")
    def _ray_train(self) -> Config:
        """Ray Train settings that cannot work fail at load, not after the data stages: workers
        without Ray (they would be ignored), a batch they cannot split (a batch the tune stage
        picks is checked when the train stage starts)."""
        workers = self.executor.train_workers
        if workers and self.executor.type != "ray":
            raise KeyedProblems(
                [
                    f"executor.train_workers: {workers} needs executor.type: ray (Ray Train); "
                    "set it, or remove train_workers to train in this process"
                ]
            )
        if workers and not self.tune.enabled:
            from lmforge.training.ray_run import batch_split_problem

            if problem := batch_split_problem(self.train.batch_size, workers):
                raise KeyedProblems([problem])
        return self

    @field_validator("model")
    @classmethod
    def _candidates(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list):
            if not value:
                raise ValueError("a list of candidate models must not be empty")
            if len(set(value)) != len(value):
                raise ValueError("candidate models are listed twice")
            if len(value) == 1:
                return value[0]
        return value

    @property
    def task_def(self) -> Task:
        """The registered `Task` named by `task`: what differs between tasks."""
        return get_task(self.task)

    @property
    def selects_model(self) -> bool:
        """Whether the `select` stage picks the model among candidates."""
        return isinstance(self.model, list) or self.model == "auto"

    @property
    def runs_portfolio(self) -> bool:
        """`model: auto` (or a list) with a budget: the train stage tries the portfolio of
        candidates (linear models, frozen-encoder probe, fine-tune, their blend) within it."""
        return self.selects_model and self.budget.enabled

    @property
    def model_name(self) -> str:
        """The one configured model (only meaningful when not selecting)."""
        assert isinstance(self.model, str)
        return self.model

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths in the config are resolved against."""
        return self._base_dir

    def resolve_path(self, value: str | Path) -> Path:
        """Resolve a path from the config relative to the config file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self._base_dir / path)

    @property
    def project_name(self) -> str:
        assert self.project is not None  # set by the validator
        return self.project

    def section_model(self, name: str) -> Any:
        """A section by its YAML key, as its pydantic model (or plain value)."""
        for attr, field in type(self).model_fields.items():
            if (field.alias or attr) == name:
                return getattr(self, attr)
        raise KeyError(name)

    def section(self, name: str) -> Any:
        """A section (or top-level value) as plain JSON-able data, by its YAML key."""
        dumped = self.model_dump(mode="json", by_alias=True)
        return dumped[name]

    def to_yaml(self) -> str:
        """The fully resolved config, every default written out."""
        return yaml.safe_dump(
            self.model_dump(mode="json", by_alias=True), sort_keys=False, allow_unicode=True
        )


def _task_problems(config: Config, task: Task) -> list[str]:
    """Settings the task cannot use: a metric it does not compute, a feature it lacks, or a
    key its stages never read set to a non-default value (a default is never an error, so a
    resolved config that spells out every default stays valid)."""
    problems = []
    best = config.train.metric_for_best_model
    if best not in task.best_model_metrics:
        problems.append(
            f"train.metric_for_best_model: {task.name} picks the best checkpoint by "
            f"{' or '.join(task.best_model_metrics)}, not {best}; set it to one of them (or leave it out)"
        )
    if config.gate.metric not in task.gate_metrics:
        problems.append(
            f"gate.metric: {task.name} is gated on {' or '.join(task.gate_metrics)}, not {config.gate.metric}"
        )
    if config.tune.enabled and config.tune.ensemble_top_k > 1 and not task.ensembles_trials:
        supported = ", ".join(t.name for t in TASKS.values() if t.ensembles_trials)
        problems.append(f"tune.ensemble_top_k: averaging trial models applies to {supported} only; use 1")
    if config.selects_model and not task.selects_models:
        supported = ", ".join(t.name for t in TASKS.values() if t.selects_models)
        problems.append(f"model: a list or `auto` (model selection) supports {supported} only so far")
    bounded = ", ".join(task.threshold_metrics)
    problems += [
        f"gate.min.{name}: {task.name} does not compute {name}; bound one of {bounded}"
        for name in config.gate.min
        if name not in task.threshold_metrics
    ]
    problems += [
        f"tune.space.{name}: train.{name} is not used by task {task.name}; leave it out of the search"
        for name in config.tune.space or {}
        if _covers(task.unused_keys, f"train.{name}")
    ]
    for path in _set_keys(config, task.unused_keys):
        users = ", ".join(t.name for t in TASKS.values() if not _covers(t.unused_keys, path))
        problems.append(f"{path}: not used by task {task.name} (only by {users or 'no task'}); remove it")
    return problems


def _set_keys(config: Config, paths: tuple[str, ...]) -> list[str]:
    """The key paths under `paths` (sections or section.key) whose value is not the default."""
    found = []
    for path in paths:
        section_name, _, key = path.partition(".")
        section = config.section_model(section_name)
        fields = type(section).model_fields
        for name in [key] if key else list(fields):
            default = fields[name].get_default(call_default_factory=True)
            if getattr(section, name) != default:
                found.append(f"{section_name}.{fields[name].alias or name}")
    return found


def _covers(paths: tuple[str, ...], key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in paths)


def load_config(
    path: str | Path | None = None,
    *,
    data: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
) -> Config:
    """Load and validate a config from a YAML file (or a dict), raising one ConfigError
    that lists every problem with its key path."""
    source: Path | None = Path(path) if path is not None else None
    if data is None:
        if source is None:
            raise ValueError("load_config needs a path or data")
        data = _read_yaml(source)
    data = dict(data)
    for item in overrides or []:
        _apply_override(data, item)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc), source=source) from None
    config._base_dir = (source.parent if source else Path.cwd()).resolve()
    return config


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a second `train:` would silently drop the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError([f"config file not found: {path} (`lmforge init DATA` writes one)"], source=None)
    if path.is_dir():
        raise ConfigError(["is a folder; pass the config file (e.g. lmforge.yaml)"], source=path)
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # a SafeLoader
    except OSError as exc:  # unreadable: permissions, a device
        raise ConfigError([f"cannot read the config: {exc.strerror or exc}"], source=path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        if "'\\t'" in problem:  # PyYAML says "found character '\t' that cannot start any token"
            problem += " (indent YAML with spaces, not tabs)"
        raise ConfigError([f"{where}invalid YAML: {problem}"], source=path) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"not UTF-8 text (byte {exc.start})"], source=path) from None
    if loaded is None:
        raise ConfigError(["the file is empty; `lmforge init DATA` writes a starter config"], source=path)
    if not isinstance(loaded, dict):
        raise ConfigError(["the top level must be a mapping of keys (project, task, data, ...)"], source=path)
    return loaded


def _apply_override(data: dict[str, Any], item: str) -> None:
    """Apply `a.b.c=value` (value parsed as YAML) to nested dicts."""
    if "=" not in item:
        raise ConfigError([f"override '{item}' must look like key.path=value"])
    key, _, raw = item.partition("=")
    parts = key.strip().split(".")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        else:
            child = dict(child)
            node[part] = child
        node = child
    node[parts[-1]] = value


_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


def _describe(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        path = ".".join(loc) or "(top level)"
        kind = err["type"]
        ctx = err.get("ctx") or {}
        got = err.get("input")
        if kind == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            close = difflib.get_close_matches(loc[-1], allowed, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            problems.append(f"{path}: unknown key; {hint}allowed: {', '.join(allowed)}")
            continue
        if kind == "missing":
            problems.append(f"{path}: required key is missing")
            continue
        if kind in _BOUNDS:
            symbol, name = _BOUNDS[kind]
            message = f"must be {symbol} {ctx.get(name)}"
        elif kind == "literal_error":
            message = f"must be one of {ctx.get('expected')}"
        elif kind == "value_error":
            message = str(ctx.get("error", err["msg"]))
            if isinstance(ctx.get("error"), KeyedProblems):  # one line per sub-key
                prefix = f"{path}." if loc else ""  # a whole-config check names full key paths
                problems.extend(prefix + line for line in ctx["error"].problems)
                continue
        else:
            message = err["msg"][0].lower() + err["msg"][1:]
        if got is not None and not isinstance(got, dict) and kind != "value_error":
            message += f", got {got!r}"
        problems.append(f"{path}: {message}")
    return problems


def _allowed_keys(loc: list[str]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc:
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return [f.alias or n for n, f in model.model_fields.items()]
