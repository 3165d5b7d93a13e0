"""The run's time budget: a plan of seconds per stage, made at the start and revised as stages
finish, with every decision the planner takes and its reason.

A budget is a hard ceiling on the whole run (ingest to register, export and report included):
the stages after `train` are *reserved* before training starts, from the test rows and the
kind of model that wins (a fine-tuned transformer costs more to evaluate and export than a
linear model), so training spends only what is left after them. Stages before training are
cheap except the label-noise check, which moves to its fast probe or is turned off when its
estimate does not fit its share; that choice depends only on the row count and the budget, so
a rerun with the same data and budget makes it again and reuses the cache.

Costs are seconds measured on this project's reference machine (2 cores, no GPU); a faster
machine finishes early, a slower one is caught by the revisions (real stage times replace the
estimates) and by the train stage's own deadline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmforge.config import Config

# Fixed seconds + seconds per *unit*: 1,000 texts of 100 characters (rows x mean length: the
# data stages' cost follows characters, not rows: 4.6k docstrings of ~1,800 characters take
# longer to clean than 16k tweets). Measured on 2 cores (emotion, sms_spam, banking77 and a
# long-text set; bench/bench_auto.py prints the actuals).
_DATA_COST: dict[str, tuple[float, float]] = {
    "ingest": (1.0, 0.08),
    "validate": (0.5, 0.02),
    "clean": (2.0, 0.3),  # repair, PII, exact + near duplicates; label noise is added apart
    "label": (0.5, 0.02),
    "split": (1.0, 0.1),
    "augment": (0.5, 0.05),
    "baseline": (1.0, 0.4),
}
# Label-noise check: one TF-IDF + logistic-regression fit per fold, per unit. Emotion's 10 folds
# of ~15 units took 31 s on an idle machine and 84-131 s on a busy one (bench_noise_probe.py);
# banking77's 77 classes cost 2-3x more per unit. Priced between the two.
NOISE_SECONDS_PER_FOLD_PER_UNIT = 0.5
# The fast probe (noise.py `probe="fast"`: 5 folds, one vocabulary, SGD), the whole check per
# unit: emotion 16 units in 4-8 s against the full probe's 38-115 s (bench/bench_noise_probe.py,
# 2 busy cores). Priced at the slow end; many classes cost more (banking77's 77: 1-2 s per unit,
# one SGD fit per class), as they do for the full probe, whose figure above ignores them too.
NOISE_FAST_SECONDS_PER_UNIT = 0.5
NOISE_SHARE = 0.10  # of the budget; above it the check runs with the fast probe, or not at all

# After training, per kind of winner: fixed seconds + seconds per unit of the test split.
_POST_COST: dict[str, dict[str, tuple[float, float]]] = {
    # bench/bench_auto.py, 9 runs on the idle 2-core machine (emotion 2.0 units, banking77 3.1,
    # sms_spam 1.0), transformer and blend winners: evaluate 3.5-7.6 s, export 11-46, gate
    # 2.3-2.8, report 1.0-4.9, register 0.2-0.3 (a local tracking store). Priced at about twice
    # that, so a busy machine still fits; a remote tracking server adds REMOTE_REGISTER_SECONDS.
    "transformer": {
        "evaluate": (4.0, 4.0),
        "export": (20.0, 12.0),  # torch.onnx.export + torch, fp32 and int8 runs on the test rows
        "gate": (3.0, 0.0),
        "report": (5.0, 0.5),
        "register": (3.0, 0.0),
    },
    "linear": {  # measured on sms_spam (1,013 test rows): 6, 19, 8, 2 and 1 s
        "evaluate": (4.0, 0.5),
        "export": (12.0, 1.5),  # skops load, skl2onnx, parity on the test rows
        "gate": (6.0, 0.0),  # MLflow client start, champion lookup
        "report": (4.0, 0.5),
        "register": (5.0, 0.0),
    },
}
_POST_COST["ensemble"] = {
    stage: (
        _POST_COST["transformer"][stage][0] + _POST_COST["linear"][stage][0] / 2,
        _POST_COST["transformer"][stage][1] + _POST_COST["linear"][stage][1],
    )
    for stage in _POST_COST["transformer"]
}
# A causal LM (generation, language modelling): `evaluate` scores the fine-tuned model on the
# test split exactly as `baseline` scored the base model (perplexity, and answers for
# generation), so once the baseline has run its measured seconds price the evaluation
# (CAUSAL_EVALUATE_FACTOR for the answers' lengths changing). Before that: smollm2-135m on
# samsum on 2 cores, 20 test rows of ~500 characters: perplexity 8 s, 20 answers of up to 64
# new tokens 19 s, loading and scoring the rest.
_POST_COST["causal"] = {
    "evaluate": (5.0, 0.0),  # + the answers and the perplexity pass (RunBudget._causal_evaluate)
    "export": (30.0, 0.0),  # GGUF: convert, load back, compare logits (only with export.gguf)
    "gate": (3.0, 0.0),
    "report": (4.0, 0.0),
    "register": (8.0, 0.0),  # MLflow's run and version (samsum, smollm2-135m: 2.3 s)
}
# Registering through an MLflow server (http, https, databricks) uploads the model folder
# (minilm-l6: 90 MB) rather than copying it: priced as ~100 Mbit/s.
REMOTE_REGISTER_SECONDS = 12.0
ANSWER_SECONDS = 1.0  # one answer of 64 new tokens, in batches of 8
PERPLEXITY_SECONDS_PER_ROW = 0.4  # a test row of 500 characters
# Scoring the base model and the fine-tuned one may take this share of the budget; above it the
# perplexity pass reads fewer test rows, then fewer prompts are answered, down to these floors.
SCORING_SHARE = 0.25
MIN_PERPLEXITY_ROWS = 100
MIN_ANSWERS = 16
CAUSAL_EVALUATE_FACTOR = 1.15
TRANSFORMER_CHARS_CAP = 500.0
POST_STAGES = ("evaluate", "export", "crossval", "gate", "report", "register")


@dataclass
class RunBudget:
    """Seconds the run may spend, from `started` (a `time.monotonic()` value)."""

    seconds: float
    stages: list[str]
    started: float = field(default_factory=time.monotonic)
    count_based: bool = False  # `budget.trials` / `deterministic`: decisions by counts, not the clock
    trials: int | None = None
    model_kind: str = "transformer"  # what training makes: "transformer" (classifier) or "causal"
    answers: int = 0  # causal: test prompts answered by each model (evaluate.generation_rows)
    answer_tokens: int = 64  # causal: the longest answer (evaluate.max_new_tokens)
    perplexity_rows: int | None = None  # causal: test rows the perplexity pass reads (None: all)
    remote_tracking: bool = False  # an MLflow server: `register` uploads the model
    rows: dict[str, int] = field(default_factory=dict)  # train / validation / test, as known so far
    mean_chars: float = 100.0  # of a text, as known so far (the file's bytes per row, then validate's)
    plan: dict[str, float] = field(default_factory=dict)
    actual: dict[str, float] = field(default_factory=dict)
    cached: dict[str, bool] = field(default_factory=dict)
    computed: dict[str, float] = field(default_factory=dict)  # a stage's own seconds, cached or not
    decisions: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.revise()

    @classmethod
    def from_config(cls, config: Config, stages: list[str]) -> RunBudget | None:
        budget = config.budget
        if budget is None or not budget.enabled:
            return None
        seconds = budget.seconds if budget.seconds is not None else float("inf")
        kind = "transformer" if config.task_def.uses_labels else "causal"
        generates = kind == "causal" and not config.task_def.raw_text
        return cls(
            seconds,
            list(stages),
            count_based=budget.count_based,
            trials=budget.trials,
            model_kind=kind,
            answers=config.evaluate.generation_rows if generates else 0,
            answer_tokens=config.evaluate.max_new_tokens,
            remote_tracking=config.tracking.enabled
            and config.tracking.uri.split(":", 1)[0].lower() in ("http", "https", "databricks"),
        )

    @property
    def deadline(self) -> float:
        return self.started + self.seconds

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def decide(self, stage: str, decision: str, reason: str) -> None:
        self.decisions.append({"stage": stage, "decision": decision, "reason": reason})

    def post_seconds(self, kind: str, after: str = "train") -> float:
        """Estimated seconds of the stages after `after` for a winner of `kind`."""
        # A classifier reads at most max_length tokens of a text: long texts cost it no more
        # than ~500 characters' worth (128 tokens); a linear model reads every character, and
        # so does a causal LM (its max_length covers the whole example).
        test_k = self.units("test", cap=None if kind in ("linear", "causal") else TRANSFORMER_CHARS_CAP)
        later = self.stages[self.stages.index(after) + 1 :] if after in self.stages else []
        return sum(self._post_stage(stage, kind, test_k) for stage in later)

    def _post_stage(self, stage: str, kind: str, test_k: float) -> float:
        costs = _POST_COST.get(kind, _POST_COST["transformer"])
        if stage not in costs:
            return 0.0
        if kind == "causal" and stage == "evaluate":
            return self._causal_evaluate()
        upload = REMOTE_REGISTER_SECONDS if stage == "register" and self.remote_tracking else 0.0
        return costs[stage][0] + costs[stage][1] * test_k + upload

    def _causal_evaluate(self) -> float:
        """Seconds to score a causal LM on the test split: the baseline's, once measured."""
        if "baseline" in self.computed:
            return 5.0 + CAUSAL_EVALUATE_FACTOR * self.computed["baseline"]
        rows = self.rows.get("test", 0.1 * self.rows.get("train", 1_000))
        read = rows if self.perplexity_rows is None else min(rows, self.perplexity_rows)
        return (
            _POST_COST["causal"]["evaluate"][0]
            + self._answer_seconds(min(self.answers, rows))
            + read * self._row_seconds()
        )

    def _answer_seconds(self, answers: float) -> float:
        return answers * ANSWER_SECONDS * self.answer_tokens / 64

    def _row_seconds(self) -> float:
        return PERPLEXITY_SECONDS_PER_ROW * max(1.0, self.mean_chars / 500)

    def scoring_cuts(self) -> tuple[int | None, int | None, float]:
        """Test rows the perplexity pass may read and prompts it may answer so that scoring the
        base and the fine-tuned model takes at most SCORING_SHARE of the budget (None: no cut),
        and what scoring all of them would take. From row counts and the budget only, so a rerun
        decides alike."""
        rows = int(self.rows.get("test", 0))
        answers = min(self.answers, rows)
        fixed = _POST_COST["causal"]["evaluate"][0]
        everything = 2 * (fixed + self._answer_seconds(answers) + rows * self._row_seconds())
        share = SCORING_SHARE * self.seconds
        if everything <= share or self.seconds == float("inf"):
            return None, None, everything
        per_pass = share / 2 - fixed
        floor = min(rows, MIN_PERPLEXITY_ROWS)
        read = max(floor, int((per_pass - self._answer_seconds(answers)) / self._row_seconds()))
        answered: int | None = None
        if read == floor and answers > MIN_ANSWERS:
            left = per_pass - floor * self._row_seconds()
            answered = max(MIN_ANSWERS, int(left / max(self._answer_seconds(1), 1e-9)))
            answered = answered if answered < answers else None
        return (read if read < rows else None), answered, everything

    def margin(self) -> float:
        """Kept free at the end: machines are noisy and the last stage must not overrun."""
        return min(30.0, max(5.0, 0.03 * self.seconds))

    def stage_deadline(self, stage: str, kind: str = "transformer") -> float:
        """The monotonic time by which `stage` must end so that the stages after it fit."""
        return self.deadline - self.post_seconds(kind, after=stage) - self.margin()

    def revise(self) -> None:
        """Re-plan the stages not yet run from the row counts known now."""
        train_k = self.units("train")
        for stage in self.stages:
            if stage in self.actual:
                continue
            if stage == "baseline" and self.model_kind == "causal":
                # The base model scored on the test split: what `evaluate` does after training.
                self.plan[stage] = self._causal_evaluate()
            elif stage in _DATA_COST:
                fixed, per_k = _DATA_COST[stage]
                self.plan[stage] = fixed + per_k * train_k
            elif stage in POST_STAGES:
                cap = None if self.model_kind == "causal" else TRANSFORMER_CHARS_CAP
                self.plan[stage] = self._post_stage(stage, self.model_kind, self.units("test", cap=cap))
        if "train" in self.stages and "train" not in self.actual and self.seconds != float("inf"):
            spent = sum(self.actual.values())
            others = sum(v for s, v in self.plan.items() if s != "train" and s not in self.actual)
            self.plan["train"] = max(0.0, self.seconds - spent - others - self.margin())

    def prior_train_seconds(self) -> float:
        """The train stage's share from the fixed cost figures alone (count mode: the same on
        every machine, whatever the earlier stages really took)."""
        train_k, test_k = self.units("train"), self.units("test", cap=TRANSFORMER_CHARS_CAP)
        others = sum(f + p * train_k for s, (f, p) in _DATA_COST.items() if s in self.stages)
        others += sum(f + p * test_k for s, (f, p) in _POST_COST["ensemble"].items() if s in self.stages)
        return max(0.0, self.seconds - others - self.margin())

    def units(self, split: str, cap: float | None = None) -> float:
        """Size of a split in cost units: thousands of texts of 100 characters (texts counted
        at most `cap` characters long)."""
        default = {"train": 10_000, "test": 2_000}.get(split, 1_000)
        chars = self.mean_chars if cap is None else min(self.mean_chars, cap)
        return self.rows.get(split, default) / 1000 * max(1.0, chars / 100)

    def finished(
        self,
        stage: str,
        seconds: float,
        rows: dict[str, int],
        cached: bool,
        text_chars: dict[str, float] | None = None,
        computed: float | None = None,
        skipped: bool = False,
    ) -> None:
        """`stage` took `seconds` (a cache hit: the lookup); `computed` is what computing it
        took (the cached artifact's own seconds), which prices the work it stands for, unless
        the stage was `skipped` (turned off: it measured nothing)."""
        self.actual[stage] = seconds
        self.cached[stage] = cached
        if not skipped:
            self.computed[stage] = seconds if computed is None else computed
        if text_chars and text_chars.get("mean"):
            self.mean_chars = float(text_chars["mean"])
        for name in ("train", "validation", "test"):
            if rows.get(name):
                self.rows[name] = int(rows[name])
        self.revise()

    def noise_folds(self, folds: int) -> int:
        """How many label-noise folds fit the budget (0: the check does not fit)."""
        if self.count_based:
            return folds
        share = NOISE_SHARE * self.seconds
        per_fold = NOISE_SECONDS_PER_FOLD_PER_UNIT * self.units("train")
        return folds if per_fold * folds <= share else int(share // max(per_fold, 1e-9))

    def table(self) -> list[dict[str, Any]]:
        """Planned vs actual seconds per stage, for the report and the end-of-run table."""
        return [
            {
                "stage": stage,
                "planned_seconds": round(self.plan.get(stage, 0.0), 1),
                "actual_seconds": round(self.actual[stage], 1) if stage in self.actual else None,
                "cached": self.cached.get(stage, False),
            }
            for stage in self.stages
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "seconds": None if self.seconds == float("inf") else self.seconds,
            "count_based": self.count_based,
            "trials": self.trials,
            "elapsed_seconds": round(self.elapsed(), 1),
            "stages": self.table(),
            "decisions": self.decisions,
        }


def budget_config(budget: RunBudget, stage: str, config: Config, events: Any) -> Config:
    """`config` with the scale-downs the budget asks of `stage`, each logged and recorded.

    Only the label-noise check is scaled today: it is the one data stage whose cost grows
    with rows x folds (minutes on tens of thousands of rows). When the full probe does not fit
    its share the fast probe is tried, and only when that does not fit either is the check
    turned off. The decision depends only on the train rows and the budget, so a rerun
    decides alike and reuses the cached stage.
    """
    from lmforge.data.noise import choose_probe

    if stage == "baseline" and budget.model_kind == "causal":
        return _causal_scoring(budget, config, events)
    clean = config.clean
    if stage != "clean" or clean.label_noise == "off":
        return config
    rows = budget.rows.get("train", 0)
    probe, _ = choose_probe(clean.label_noise_probe, rows)
    folds = 10
    if probe == "full" and budget.noise_folds(folds) >= folds:
        return config
    share = NOISE_SHARE * budget.seconds
    fast = NOISE_FAST_SECONDS_PER_UNIT * budget.units("train")
    if budget.count_based or fast <= share:
        if probe == "fast":
            return config  # already the cheap probe, and it fits
        full = NOISE_SECONDS_PER_FOLD_PER_UNIT * budget.units("train") * folds
        reason = (
            f"the full label-noise probe on {rows:,} rows of {budget.mean_chars:.0f} characters needs "
            f"~{full:.0f} s, over its share ({NOISE_SHARE:.0%} of the budget, {share:.0f} s); "
            f"the fast probe needs ~{fast:.0f} s"
        )
        budget.decide("clean", "clean.label_noise_probe: fast", reason)
        events.emit("warning", "clean", f"label-noise check on the fast probe: {reason}")
        return config.model_copy(update={"clean": clean.model_copy(update={"label_noise_probe": "fast"})})
    reason = (
        f"the label-noise check of {rows:,} rows of {budget.mean_chars:.0f} characters needs "
        f"~{fast:.0f} s even with the fast probe, over its share "
        f"({NOISE_SHARE:.0%} of the budget, {share:.0f} s)"
    )
    budget.decide("clean", "clean.label_noise: off", reason)
    events.emit("warning", "clean", f"label-noise check off: {reason}")
    return config.model_copy(update={"clean": clean.model_copy(update={"label_noise": "off"})})


def _causal_scoring(budget: RunBudget, config: Config, events: Any) -> Config:
    """Before the base model is scored: fewer test rows for perplexity (then fewer prompts
    answered) when scoring both models on all of them would not fit SCORING_SHARE of the
    budget. `baseline`, `evaluate` and the gate's champion then read the same first rows."""
    evaluate = config.evaluate
    if evaluate.perplexity_rows is not None:  # the user's own choice stands
        budget.perplexity_rows = evaluate.perplexity_rows
        return config
    read, answered, everything = budget.scoring_cuts()
    if read is None and answered is None:
        return config
    update: dict[str, Any] = {}
    rows = budget.rows.get("test", 0)
    parts = []
    if read is not None:
        update["perplexity_rows"] = budget.perplexity_rows = read
        parts.append(f"evaluate.perplexity_rows: {read} of {rows:,} test rows")
    if answered is not None:
        update["generation_rows"] = budget.answers = answered
        parts.append(f"evaluate.generation_rows: {answered}")
    reason = (
        f"scoring the base model and the fine-tuned one on all {rows:,} test rows needs ~{everything:.0f} s, "
        f"over {SCORING_SHARE:.0%} of the budget ({SCORING_SHARE * budget.seconds:.0f} s)"
    )
    for part in parts:
        budget.decide("baseline", part, reason)
    events.emit("warning", "baseline", f"{'; '.join(parts)}: {reason}")
    budget.revise()
    return config.model_copy(update={"evaluate": evaluate.model_copy(update=update)})


def estimate_size(paths: list[Any]) -> tuple[int, float]:
    """Rows and mean bytes per row of the data files, cheaply: lines of CSV/JSONL (a little high
    with quoted newlines), Parquet's own count. Only the planner's first guess; real counts
    replace it after ingest and validate."""
    from pathlib import Path

    total, size = 0, 0
    for path in map(Path, paths):
        if not path.is_file():
            continue
        size += path.stat().st_size
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            total += pq.ParquetFile(path).metadata.num_rows
            continue
        with path.open("rb") as fh:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    return total, size / max(1, total)


def minimum_seconds(rows: int, mean_chars: float = 100.0, causal_answers: int | None = None) -> float:
    """The least a run of `rows` texts of `mean_chars` can take: its data stages, one linear
    model, the stages after training for a linear winner, and the margin. A causal task
    (`causal_answers`: the test prompts each model answers) instead scores the base model,
    fine-tunes for 30 s, scores the result and registers it."""
    train_k = rows / 1000 * max(1.0, mean_chars / 100)
    if causal_answers is not None:
        # Scoring at its floors: a tight budget cuts the rows scored down to these.
        budget = RunBudget(float("inf"), [], model_kind="causal", answers=min(causal_answers, MIN_ANSWERS))
        budget.perplexity_rows = MIN_PERPLEXITY_ROWS
        budget.mean_chars = mean_chars
        budget.rows.update(train=rows, test=max(1, rows // 10))
        data_stages = ("ingest", "validate", "clean", "split")
        data = sum(_DATA_COST[s][0] + _DATA_COST[s][1] * train_k for s in data_stages)
        post = sum(_POST_COST["causal"][s][0] for s in ("gate", "report", "register"))
        # 30 s of steps and the model's save (training/causal_budget.py)
        return data + 2 * budget._causal_evaluate() + 30.0 + 15.0 + post + 5.0
    data = sum(fixed + per_k * train_k for fixed, per_k in _DATA_COST.values())
    # Vectorising and one fit (classical/search.py: 7.7 s + 4.3 s for 2.5k docstrings, 45 units).
    linear = 5.0 + 0.3 * train_k
    test_k = 0.1 * train_k  # a split's usual test share
    post = sum(fixed + per_k * test_k for fixed, per_k in _POST_COST["linear"].values())
    return data + linear + post + 5.0
