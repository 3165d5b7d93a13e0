"""The portfolio: candidate models tried cheapest first under the run's budget, the best kept.

Order (FLAML's cost-frugal order): the majority class (a floor), TF-IDF word + character
n-grams with logistic regression and a calibrated linear SVM (C searched), a logistic
regression on frozen-encoder embeddings, then a fine-tune of the encoder with the recipe's
settings and the steps that fit. The fine-tune is stopped at rungs (25%, 50% of its steps)
when it trails the best cheaper candidate by more than the rung's margin (successive halving
between candidates: the fine-tune keeps the time only while the cheap ones say it is worth
it). Last, a weighted average of the best transformer and the best linear model is the winner
when it beats both out of fold on validation.

Wall-clock mode gives each candidate a share of the time left; count mode (`budget.trials`,
`budget.deterministic`) decides by counts only, so the same data and seed give the same model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmforge.config import TrainConfig
from lmforge.pipeline.budget import RunBudget
from lmforge.tasks.classification import metrics
from lmforge.training.recipe import MAX_EPOCHS as RECIPE_MAX_EPOCHS

LINEAR_SHARE = 0.2  # of the train stage's time: the linear search (it usually needs far less)
PROBE_SHARE = 0.15  # the frozen-encoder probe
PROBE_ROWS_COUNT_MODE = 4000  # count mode: the probe embeds at most this many train rows
PROBE_C = 1.0  # on standardised states (classical/embedding_probe.py)
BLEND_WORTH = 0.05  # a fine-tune further behind the best cheaper model is not scored again
SAVE_SECONDS = 15.0  # writing the winner inside the train stage (a linear model's vocabulary: ~10 s)
MIN_MAX_LENGTH = 128  # the budget never cuts texts shorter than this many tokens
EVALUATIONS = 3  # of the fine-tune on validation: two rungs and the end
FINETUNE_FIXED_SECONDS = 25.0  # load, tokenise, time steps, save: paid whatever the step count
BLEND_SECONDS = 10.0  # the blend after the fine-tune (banking77: 1k rows x 77 classes, ~5 s)
# A fine-tune whose recipe epochs fit trains on to this many epochs while the budget lasts (the
# recipe's own ceiling; its best evaluated checkpoint is the one kept).
SPARE_TIME_EPOCHS = float(RECIPE_MAX_EPOCHS)


@dataclass
class Candidate:
    name: str
    kind: str  # linear | transformer | majority | ensemble
    status: str = "pending"  # trained | dropped | stopped | failed
    score: float | None = None
    seconds: float = 0.0
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    model: Any = None  # LinearModel, a transformer folder (Path), or None
    validation_proba: np.ndarray | None = None

    def row(self) -> dict[str, Any]:
        return {
            "candidate": self.name,
            "kind": self.kind,
            "status": self.status,
            "validation_score": None if self.score is None else round(self.score, 4),
            "seconds": round(self.seconds, 1),
            "reason": self.reason,
            **self.details,
        }


class Portfolio:
    def __init__(
        self,
        *,
        reference: str,
        base_dir: Path,
        cfg: TrainConfig,
        labels: list[str],
        train: pd.DataFrame,
        validation: pd.DataFrame,
        metric: str,
        budget: RunBudget,
        work_dir: Path,
        log: Callable[[str], None],
    ) -> None:
        self.reference, self.base_dir, self.cfg = reference, base_dir, cfg
        self.labels, self.train, self.validation = labels, train, validation
        self.metric, self.budget, self.work_dir, self.log = metric, budget, work_dir, log
        self.candidates: list[Candidate] = []
        self.finetune_fit: Any = None
        self.timing: Any = None  # the fine-tune's measured step time (wall-clock mode)
        self.finetune_fits = True  # whether MIN_STEPS of fine-tuning fit after the probe's share
        self._resolved: Any = None
        self.max_length: int | None = None  # the recipe's, or less when the budget cuts texts

    # -- helpers -------------------------------------------------------------------------
    def score(self, truth: Sequence[str], predicted: Sequence[str]) -> float:
        return float(metrics(list(truth), list(predicted))[self.metric])

    def proba_score(self, proba: np.ndarray) -> float:
        label_arr = np.asarray(self.labels, dtype=object)
        return self.score(self.validation["label"].tolist(), list(label_arr[proba.argmax(1)]))

    def deadline(self) -> float:
        """When the candidates must be done: the train stage's end (with the reserve of the
        costliest winner kind after it) less the time to write the winner."""
        return self.budget.stage_deadline("train", "ensemble") - SAVE_SECONDS

    def left(self) -> float:
        return self.deadline() - time.monotonic()

    def best(self, kind: str | None = None) -> Candidate | None:
        scored = [c for c in self.candidates if c.score is not None and c.model is not None]
        if kind:
            scored = [c for c in scored if c.kind == kind]
        return max(scored, key=lambda c: c.score or 0.0, default=None)

    def best_score(self) -> float | None:
        best = self.best()
        return None if best is None else best.score

    def decide(self, decision: str, reason: str) -> None:
        self.budget.decide("train", decision, reason)
        self.log(f"{decision}: {reason}")

    # -- candidates ----------------------------------------------------------------------
    def majority(self) -> None:
        top = self.train["label"].value_counts().idxmax()
        score = self.score(self.validation["label"].tolist(), [top] * len(self.validation))
        self.candidates.append(
            Candidate("majority", "majority", "trained", score, reason=f"always {top!r}: the floor")
        )

    def linear(self) -> None:
        from lmforge.classical.search import search_linear

        started = time.monotonic()
        count_mode = self.budget.count_based
        trials = self.budget.trials
        max_fits = max(1, trials - 2) if count_mode and trials else (8 if count_mode else None)
        deadline = None if count_mode else started + max(10.0, LINEAR_SHARE * self.left())
        result = search_linear(
            self.train["text"].tolist(),
            self.train["label"].tolist(),
            self.validation["text"].tolist(),
            self.validation["label"].tolist(),
            self.labels,
            metric=self.metric,
            deadline=deadline,
            max_fits=max_fits,
            seed=self.cfg.seed,
            log=self.log,
        )
        best = result.best
        proba = best.proba(self.validation["text"].tolist(), labels=self.labels)
        self.candidates.append(
            Candidate(
                f"tfidf + {best.head.replace('_', ' ')}",
                "linear",
                "trained",
                self.proba_score(proba),
                time.monotonic() - started,
                reason=f"best of {len(result.trials)} fits (C {best.C:g}; {result.stopped})",
                details={"C": best.C, "fits": len(result.trials), "search": result.summary()},
                model=best,
                validation_proba=proba,
            )
        )

    def measure_finetune(self) -> None:
        """Time a few fine-tune steps before the probe: when no useful fine-tune fits, the probe
        gets the fine-tune's time instead of its share. Long texts are cut first when an epoch
        at the recipe's max_length cannot fit (the cost of a step grows with its length)."""
        from lmforge.training.timed_finetune import plan_steps, reference_timing, time_steps

        if self.budget.count_based or self.left() < FINETUNE_FIXED_SECONDS + 30:
            self.finetune_fits = self.budget.count_based
            return
        settings = self._settings()
        batch = settings.batch_size * settings.gradient_accumulation_steps
        epochs = self._epochs(batch)
        after_probe = self.left() * (1 - PROBE_SHARE) - FINETUNE_FIXED_SECONDS
        self.max_length = _fitting_length(
            settings.max_length, after_probe, batch, len(self.train), len(self.validation)
        )
        if self.max_length < settings.max_length:
            self.decide(
                "fine-tune max_length",
                f"{settings.max_length} -> {self.max_length} tokens: at {settings.max_length} one epoch "
                f"would not fit the {after_probe:.0f} s left for it (reference step cost)",
            )
        rough = reference_timing(self.max_length, batch, len(self.validation))
        if plan_steps(after_probe, rough, len(self.train), epochs, EVALUATIONS) is None:
            self.finetune_fits = False
            self.log(f"fine-tune: ~{rough.seconds_per_step:.1f} s per step expected; the probe gets its time")
            return

        def timed(length: int) -> Any:
            cfg = self.cfg.model_copy(update={"max_length": length, "batch_size": settings.batch_size})
            return time_steps(
                self.reference,
                self.base_dir,
                self.labels,
                self.train,
                len(self.validation),
                cfg,
                self.work_dir / "timing",
            )

        self.timing = timed(self.max_length)
        after_probe = self.left() * (1 - PROBE_SHARE) - self.timing.eval_seconds - 5
        self.finetune_fits = plan_steps(after_probe, self.timing, len(self.train), epochs) is not None
        if not self.finetune_fits and self.max_length > MIN_MAX_LENGTH:
            # Measured far slower than the reference (long sequences: attention grows with the
            # square of the length): halve the texts once more and time again.
            shorter = max(MIN_MAX_LENGTH, self.max_length // 2 // 32 * 32)
            self.decide(
                "fine-tune max_length",
                f"{self.max_length} -> {shorter} tokens: {self.timing.seconds_per_step:.1f} s per step "
                f"measured at {self.max_length}, too slow for the {after_probe:.0f} s left",
            )
            self.max_length = shorter
            self.timing = timed(shorter)
            after_probe = self.left() * (1 - PROBE_SHARE) - self.timing.eval_seconds - 5
            self.finetune_fits = plan_steps(after_probe, self.timing, len(self.train), epochs) is not None
        self.log(
            f"fine-tune: {self.timing.seconds_per_step:.2f} s per step"
            + ("" if self.finetune_fits else "; too slow for this budget, the probe gets its time")
        )

    def embedding_probe(self) -> None:
        from lmforge.classical.embedding_probe import fit_embedding_probe

        started = time.monotonic()
        count_mode = self.budget.count_based
        if count_mode and self.budget.trials is not None and self.budget.trials < 2:
            self._drop("frozen encoder + LR", "transformer", "budget.trials leaves no fit for it")
            return
        share = PROBE_SHARE if self.finetune_fits else 1.0
        deadline = None if count_mode else started + share * self.left()
        if deadline is not None and deadline - started < 5:
            self._drop("frozen encoder + LR", "transformer", f"{deadline - started:.0f} s left for it")
            return
        train = self.train
        if count_mode and len(train) > PROBE_ROWS_COUNT_MODE:
            train = train.sample(n=PROBE_ROWS_COUNT_MODE, random_state=self.cfg.seed)
        folder = self.work_dir / "probe"
        max_length = self._max_length()
        model_dir, probe = fit_embedding_probe(
            self.reference,
            self.base_dir,
            train["text"].tolist(),
            train["label"].tolist(),
            self.labels,
            max_length=max_length,
            C=PROBE_C,
            out_dir=folder,
            deadline=deadline,
            seed=self.cfg.seed,
            log=self.log,
        )
        proba = np.asarray(probe.proba(self.validation["text"].tolist()))
        used = probe.rows_used
        self.candidates.append(
            Candidate(
                f"{_short(self.reference)} frozen + LR",
                "transformer",
                "trained",
                self.proba_score(proba),
                time.monotonic() - started,
                reason=f"logistic regression on {used:,} of {len(self.train):,} rows' mean-pooled states",
                details={"rows": used, "max_length": max_length, "probe": True},
                model=Path(model_dir),
                validation_proba=proba,
            )
        )

    def finetune(self, callbacks: Callable[[], list[Any]]) -> None:
        from lmforge.training.clock_schedule import clock_schedule, clock_settings, warmup_steps_of
        from lmforge.training.fit import TrainingDiverged, fit_classifier
        from lmforge.training.timed_finetune import (
            budget_callbacks,
            most_steps,
            plan_steps,
            reference_timing,
            time_steps,
        )

        name = f"{_short(self.reference)} fine-tuned"
        started = time.monotonic()
        count_mode = self.budget.count_based
        if count_mode and self.budget.trials is not None and self.budget.trials < 3:
            self._drop(name, "transformer", "budget.trials leaves no fit for it")
            return
        if not count_mode and self.left() < FINETUNE_FIXED_SECONDS + 30:
            self._drop(
                name,
                "transformer",
                f"{self.left():.0f} s left; a fine-tune needs about "
                f"{FINETUNE_FIXED_SECONDS + 30:.0f} s for its first useful steps",
            )
            return
        settings = self._settings()
        batch = settings.batch_size * settings.gradient_accumulation_steps
        epochs = self._epochs(batch)
        update: dict[str, Any] = {"max_length": self._max_length(), "batch_size": settings.batch_size}
        stops: list[str] = []
        deadline: float | None = None
        final_pass = 0.0
        clock: dict[str, Any] | None = None
        if count_mode:
            steps = max(1, int(epochs * len(self.train) / batch))
            plan_reason = f"the recipe's {epochs:g} epochs ({steps} steps, count mode)"
            if self.budget.seconds != float("inf"):
                # `deterministic` with minutes: the steps that fit the *planned* train time at the
                # reference step cost, the same on any machine; the minutes stay a hard stop.
                timing = reference_timing(settings.max_length, batch, len(self.validation))
                planned = self.budget.prior_train_seconds() * (1 - LINEAR_SHARE - PROBE_SHARE)
                plan = plan_steps(planned - FINETUNE_FIXED_SECONDS, timing, len(self.train), epochs)
                if plan is None:
                    self._drop(
                        name, "transformer", f"fewer than 30 steps fit {planned:.0f} s at the reference cost"
                    )
                    return
                steps = plan.max_steps
                plan_reason = f"{plan.reason} at the reference step cost ({steps} steps, count mode)"
                deadline = self.deadline()
            final_pass = reference_timing(settings.max_length, batch, len(self.validation)).eval_seconds
            update.update(max_steps=steps, eval_steps=_eval_steps(steps))
        else:
            timing = self.timing or time_steps(
                self.reference,
                self.base_dir,
                self.labels,
                self.train,
                len(self.validation),
                self.cfg.model_copy(update=update),
                self.work_dir / "timing",
            )
            # After training: the Trainer's last validation pass, the pass that scores the
            # probabilities, the save, and the blend's weight search and bootstrap.
            available = self.left() - 2 * timing.eval_seconds - 10 - BLEND_SECONDS
            plan = plan_steps(available, timing, len(self.train), epochs, EVALUATIONS)
            if plan is None:
                self._drop(
                    name,
                    "transformer",
                    f"{timing.seconds_per_step:.2f} s per step: fewer than 30 steps fit in {available:.0f} s",
                )
                return
            # The learning rate is laid out over the seconds left (training/clock_schedule.py),
            # so a step cost measured high does not leave time unused, and one measured low does
            # not overrun. When the recipe's epochs fit with time to spare, the fine-tune trains
            # on (up to SPARE_TIME_EPOCHS, the recipe's epochs when set by hand): emotion at 15
            # minutes ended 270 s early after its 3 epochs, a little below the default run.
            most = SPARE_TIME_EPOCHS if self.cfg.epochs == "auto" else epochs
            steps = most_steps(plan, len(self.train), batch, epochs, most)
            recipe_steps = max(1, int(epochs * len(self.train) / batch))
            update.update(clock_settings(steps), method=plan.method)
            if plan.method == "freeze":
                # The recipe's rate for the full fine-tune, not its unmeasured freeze default
                # (5e-4): from a fresh head on sms_spam that exploded by step 28, twice.
                update.update(trainable_layers=2, learning_rate=settings.learning_rate)
            clock = {
                "end": time.monotonic() + available,
                "max_steps": steps,
                "warmup_steps": warmup_steps_of(settings.warmup_ratio, plan.max_steps),
                "shape": settings.lr_scheduler,
            }
            plan_reason = (
                f"up to the recipe's {steps} steps, learning rate laid out over {available:.0f} s "
                f"({plan.reason} at the {timing.seconds_per_step:.2f} s per step measured)"
            )
            if steps > recipe_steps:
                plan_reason = (
                    f"the recipe's {epochs:g} epochs ({recipe_steps} steps) fit with time to spare: up to "
                    f"{steps * batch / len(self.train):.0f} epochs ({steps} steps), learning rate laid out "
                    f"over {available:.0f} s ({timing.seconds_per_step:.2f} s per step measured)"
                )
            deadline = self.deadline()
            final_pass = timing.eval_seconds
        self.decide("fine-tune plan", plan_reason)
        cfg = self.cfg.model_copy(update=update)
        rival_best = self.best_score()
        # Linear probing, then fine-tuning (LP-FT, Kumar et al. 2022): start from the probe's
        # folder, whose head already classifies, not from a random head that first distorts the
        # encoder's features while it catches up. Fewer steps are wasted, which is what a budget has.
        probe = next((c for c in self.candidates if c.details.get("probe") and c.model is not None), None)
        start = str(probe.model) if probe is not None else self.reference
        if probe is not None:
            self.decide("fine-tune start", f"from the frozen-encoder probe's head ({probe.name}), LP-FT")

        def fit_from(reference: str, folder: str) -> Any:
            # LP-FT gets no restart at a lower rate: on sms_spam, from the probe's head, the loss
            # exploded at the recipe's 2e-4 by step 15 and again at 1e-4 by step 39, each restart
            # costing a reload. A fresh head at the recipe's rate (below) is the measured-stable
            # start, and the time the restarts would spend is the fresh head's.
            fit_cfg = cfg.model_copy(update={"max_restarts": 0}) if reference != self.reference else cfg
            # Made once per start, shared by the Trainers a divergence restart builds: the
            # schedule's clock keeps running across a restart.
            extra = budget_callbacks(
                deadline, steps, lambda: rival_best, self.metric, stops.append, final_pass
            )
            if clock is not None:
                extra.append(clock_schedule(**clock))
            return fit_classifier(
                reference,
                self.base_dir,
                self.labels,
                self.train,
                self.validation,
                fit_cfg,
                self.work_dir / folder,
                callbacks=lambda: [*callbacks(), *extra],
                log=self.log,
            )

        try:
            fit = fit_from(start, "checkpoints")
        except TrainingDiverged as exc:
            if start == self.reference:
                raise
            # A confident probe head with class weights can make LP-FT's loss spike (sms_spam);
            # the recipe's own start, a fresh head, is the one measured stable (issue 17).
            self.decide("fine-tune restart", f"LP-FT diverged ({exc}); fine-tuning from a fresh head")
            fit = fit_from(self.reference, "checkpoints-fresh")
        self.finetune_fit = fit
        status = "stopped" if stops else "trained"
        details = {
            "steps": fit.steps,
            "method": fit.settings.method,
            "epochs": round(fit.steps * batch / len(self.train), 2),
        }
        reason = f"stopped at {stops[0]}" if stops else plan_reason
        if stops:
            self.decide("fine-tune stopped", stops[0])
        evaluated = fit.best_metric
        if evaluated is not None and rival_best is not None and evaluated < rival_best - BLEND_WORTH:
            # Far behind a cheaper model: it cannot win, and a blend with it would not either;
            # a last pass over the validation split would only spend the budget.
            self.candidates.append(
                Candidate(
                    name,
                    "transformer",
                    status,
                    float(evaluated),
                    time.monotonic() - started,
                    reason=f"{reason}; trails the best cheaper candidate by more than {BLEND_WORTH}",
                    details=details,
                )
            )
            return
        proba = _trainer_proba(fit, self.validation, self.labels, fit.settings.max_length)
        self.candidates.append(
            Candidate(
                name,
                "transformer",
                status,
                self.proba_score(proba),
                time.monotonic() - started,
                reason=reason,
                details=details,
                model="finetune",
                validation_proba=proba,
            )
        )

    def ensemble(self) -> Candidate | None:
        from lmforge.training.blend import blend

        transformer, linear = self.best("transformer"), self.best("linear")
        if transformer is None or linear is None:
            return None
        assert transformer.validation_proba is not None and linear.validation_proba is not None
        result = blend(
            transformer.validation_proba,
            linear.validation_proba,
            self.validation["label"].tolist(),
            self.labels,
            self.score,
        )
        candidate = Candidate(
            f"blend of {transformer.name} and {linear.name}",
            "ensemble",
            "trained" if result.used else "not better",
            result.score,
            reason=result.reason,
            details={"weights": {"transformer": result.weight, "linear": round(1 - result.weight, 2)}},
            model=(transformer, linear) if result.used else None,
        )
        self.candidates.append(candidate)
        return candidate

    def winner(self) -> Candidate:
        shippable = [c for c in self.candidates if c.model is not None and c.score is not None]
        # Ties go to a blend that was kept (kept on a tie of its members, it scores as the best
        # of them), then to the cheaper model: the one tried first.
        return max(
            shippable,
            key=lambda c: (round(c.score or 0.0, 4), c.kind == "ensemble", -self.candidates.index(c)),
        )

    def attempt(self, name: str, step: Callable[[], Any]) -> None:
        """Run one candidate's step; an error makes it a failed candidate, not a failed run."""
        started = time.monotonic()
        try:
            step()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # reported in the table, the log and the budget's decisions
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            self.candidates.append(
                Candidate(name, "failed", "failed", seconds=time.monotonic() - started, reason=reason)
            )
            self.budget.decide("train", f"{name} failed", reason)
            self.log(f"{name} failed, the other candidates go on: {reason}")

    # -- internals -----------------------------------------------------------------------
    def _drop(self, name: str, kind: str, reason: str) -> None:
        self.candidates.append(Candidate(name, kind, "dropped", reason=reason))
        self.decide(f"dropped {name}", reason)

    def _max_length(self) -> int:
        return int(self.max_length or self._settings().max_length)

    def _settings(self) -> Any:
        """The recipe's settings for this train split (tokenising every text once, then kept)."""
        if self._resolved is None:
            from lmforge.training.fit import classification_settings

            self._resolved = classification_settings(
                self.reference, self.base_dir, self.cfg, self.train, self.labels
            )[2]
        return self._resolved

    def _epochs(self, batch: int) -> float:
        from lmforge.training.recipe import auto_epochs

        if self.cfg.epochs == "auto":
            return float(auto_epochs(len(self.train), batch)[0])
        return float(self.cfg.epochs)


def _fitting_length(
    max_length: int, seconds: float, batch: int, train_rows: int, validation_rows: int
) -> int:
    """The longest max_length (a multiple of 32, at least 128) at which one epoch fits `seconds`
    at the reference step cost; `max_length` itself when it fits."""
    from lmforge.training.timed_finetune import reference_timing

    length = max_length
    while length > MIN_MAX_LENGTH:
        timing = reference_timing(length, batch, validation_rows)
        epoch = max(1, train_rows // batch) * timing.seconds_per_step + EVALUATIONS * timing.eval_seconds
        if epoch <= seconds:
            break
        length = max(MIN_MAX_LENGTH, (length // 2) // 32 * 32)
    return length


def _eval_steps(steps: int) -> int:
    # Three evaluations: the rungs at a third and two thirds, and the end.
    return max(1, -(-steps // EVALUATIONS))


def _short(reference: str) -> str:
    """A model reference as a table shows it: a zoo name, or a folder's name."""
    return Path(reference).name or reference


def _trainer_proba(fit: Any, validation: pd.DataFrame, labels: list[str], max_length: int) -> np.ndarray:
    from lmforge.tasks.classification import predict_proba

    return np.asarray(
        predict_proba(
            fit.model, fit.tokenizer, validation["text"].tolist(), batch_size=64, max_length=max_length
        )
    )
