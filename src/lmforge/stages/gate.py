"""gate: may this model become the champion? Never cached: the champion lives in the
registry, outside the run folder, and may have changed since the last run.

Three checks on the test split: gain over the best baseline (`gate.min_gain`), absolute
thresholds (`gate.min`), and not worse than the registry's current `champion` by more
than `gate.champion_tolerance` *on this run's test set*: the champion is scored on it
(its score is remembered as a tag on its model version, keyed by the test set's hash).
`register` gives the model the alias `champion` when every check passes, else `challenger`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lmforge.config import GateConfig
from lmforge.owner import owned_tempdir
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.registry.names import CHAMPION, CHECK_TAG, HASH_TAG, SCORE_TAG
from lmforge.tasks.registry import get_task

CHAMPION_CHECK = "champion"
# The champion is downloaded into a temp folder named after its owner (lmforge.owner).
CHAMPION_TMP = "lmforge-champion-"
"""The name of the check against the registry's champion in `decision.json`."""


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def run(ctx: StageContext, cfg: GateConfig, inputs: Inputs) -> StageResult:
    evaluate, baseline = inputs["evaluate"], inputs["baseline"]
    if not cfg.enabled:
        ctx.out.write_json("decision", {"enabled": False, "passed": True, "checks": []})
        return StageResult(summary={"enabled": False, "passed": True, "reasons": []})
    value = float(evaluate.metrics[cfg.metric])
    checks = [_baseline_check(cfg, value, baseline.metrics)]
    checks += [
        _threshold_check(name, float(evaluate.metrics[name]), floor) for name, floor in cfg.min.items()
    ]
    champion = _champion_check(ctx, cfg, value, inputs)
    if champion is not None:
        checks.append(champion)
    passed = all(c.passed for c in checks)
    reasons = [c.detail for c in checks if not c.passed]
    decision = {
        "enabled": True,
        "metric": cfg.metric,
        "value": value,
        "passed": passed,
        "required": cfg.required,
        "checks": [asdict(c) for c in checks],
    }
    ctx.out.write_json("decision", decision)
    for check in checks:
        (ctx.log if check.passed else ctx.warn)(
            f"{'pass' if check.passed else 'FAIL'} {check.name}: {check.detail}"
        )
    return StageResult(
        metrics={"passed": float(passed)},
        summary={"enabled": True, "passed": passed, "reasons": reasons, "required": cfg.required},
    )


# Perplexity is the one gate metric where lower is better.
LOWER_IS_BETTER = {"perplexity"}


def _gain(metric: str, value: float, reference: float) -> float:
    """How much better `value` is than `reference` (a perplexity drop counts as a gain)."""
    return reference - value if metric in LOWER_IS_BETTER else value - reference


def _baseline_check(cfg: GateConfig, value: float, baseline: dict[str, float]) -> Check:
    scores = {
        k.removesuffix(f"_{cfg.metric}"): v for k, v in baseline.items() if k.endswith(f"_{cfg.metric}")
    }
    if not scores:
        return Check("baseline", True, "no baseline was fitted (baseline.enabled is false)")
    pick = min if cfg.metric in LOWER_IS_BETTER else max
    best_name, best = pick(scores.items(), key=lambda kv: kv[1])
    gain = _gain(cfg.metric, value, best)
    passed = gain >= cfg.min_gain - 1e-12
    return Check(
        "baseline",
        passed,
        f"{cfg.metric} {value:.4f} vs {best_name} {best:.4f}: gain {gain:+.4f} "
        f"{'>=' if passed else '<'} required {cfg.min_gain:+.4f}",
    )


def _threshold_check(name: str, value: float, floor: float) -> Check:
    if name in LOWER_IS_BETTER:  # a ceiling
        passed = value <= floor
        return Check(f"max {name}", passed, f"{name} {value:.4f} {'<=' if passed else '>'} {floor:.4f}")
    passed = value >= floor
    return Check(f"min {name}", passed, f"{name} {value:.4f} {'>=' if passed else '<'} {floor:.4f}")


def testset_hash(test: pd.DataFrame) -> str:
    """Identifies a test set by its content (texts and labels, or conversations), whatever
    file it came from."""
    columns = [c for c in ("text", "label", "messages") if c in test.columns]
    payload = json.dumps([test[c].tolist() for c in columns], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# Where the gate remembers its last champion check, beside the run folders.
MEMO_FILE = ".gate-champion.json"


def _champion_check(ctx: StageContext, cfg: GateConfig, value: float, inputs: Inputs) -> Check | None:
    config = ctx.config
    if not (config.tracking.enabled and config.register_.enabled):
        return None
    from lmforge.registry.client import local_store, tracking_uri
    from lmforge.registry.memo import recall, remember, store_stamp

    name = config.register_.model_name or config.project_name
    uri = tracking_uri(config)
    # Same registry state, model, test split and rule as last time: the same answer, without
    # importing MLflow (a no-change rerun's cost). The split's content hash covers the test set.
    key = {
        "uri": uri,
        "model_name": name,
        "model": inputs["train"].content_hash,
        "split": inputs["split"].content_hash,
        "metric": cfg.metric,
        "value": value,
        "tolerance": cfg.champion_tolerance,
    }
    memo, stamp = ctx.run_dir.parent / MEMO_FILE, store_stamp(local_store(config))
    remembered = recall(memo, key, stamp)
    if remembered is not None:
        ctx.log("champion check reused: the registry has not changed since it was made")
        return Check(**remembered)
    check = _ask_registry(ctx, cfg, value, inputs, uri, name)
    # The stamp after asking: scoring the champion tags its version, which is a write.
    remember(memo, key, store_stamp(local_store(config)), asdict(check))
    return check


def _ask_registry(
    ctx: StageContext, cfg: GateConfig, value: float, inputs: Inputs, uri: str, name: str
) -> Check:
    from lmforge.registry import client_for

    config = ctx.config
    client = client_for(uri)
    champion = _champion(client, name)
    if champion is None:
        return Check(CHAMPION_CHECK, True, f"no champion registered as {name} yet")
    if champion.tags.get(HASH_TAG) == inputs["train"].content_hash:
        # Rerun of the champion itself: repeat the comparison that made it champion, so an
        # unchanged run gives an unchanged decision (and its report stays cached).
        if CHECK_TAG in champion.tags:
            return Check(**json.loads(champion.tags[CHECK_TAG]))
        return Check(CHAMPION_CHECK, True, f"this model is the champion ({name} version {champion.version})")
    test = inputs["split"].table("test")
    tag = SCORE_TAG.format(test=testset_hash(test), metric=cfg.metric)
    if tag in champion.tags:
        score = float(champion.tags[tag])
    else:
        score_or_reason = (
            _score_champion(ctx, client, champion, test, inputs["split"].json("labels"), cfg.metric)
            if get_task(config.task).uses_labels
            else _score_causal_champion(ctx, champion, test, cfg.metric)
        )
        if isinstance(score_or_reason, str):
            return Check(
                CHAMPION_CHECK, True, f"champion version {champion.version} not comparable: {score_or_reason}"
            )
        score = score_or_reason
        client.set_model_version_tag(name, champion.version, tag, f"{score:.6f}")
    passed = _gain(cfg.metric, value, score) >= -cfg.champion_tolerance - 1e-12
    return Check(
        CHAMPION_CHECK,
        passed,
        f"{cfg.metric} {value:.4f} vs champion version {champion.version} {score:.4f} on this test set "
        f"(tolerance {cfg.champion_tolerance:g})",
    )


def _champion(client: Any, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no such model or alias
        return None


def _score_champion(
    ctx: StageContext, client: Any, champion: Any, test: pd.DataFrame, labels: list[str], metric: str
) -> float | str:
    """The champion's `metric` on this test set, or why it cannot be scored."""
    import mlflow

    from lmforge.models.scorer import load_scorer
    from lmforge.tasks.classification import metrics

    with owned_tempdir(CHAMPION_TMP) as tmp:  # a killed gate's copy is removed next time
        ctx.log(f"scoring champion version {champion.version} on this test set")
        folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=champion.source, dst_path=str(tmp)))
        scorer = load_scorer(folder)  # any kind: transformer, linear, ensemble
        champion_labels = scorer.labels
        if sorted(champion_labels) != sorted(labels):
            return f"it predicts other labels ({', '.join(sorted(champion_labels)[:5])} ...)"
        probs = scorer.proba(test["text"].tolist(), batch_size=64)
    predicted = [champion_labels[i] for i in probs.argmax(axis=1)]
    return metrics(test["label"].tolist(), predicted)[metric]


def _score_causal_champion(ctx: StageContext, champion: Any, test: pd.DataFrame, metric: str) -> float | str:
    """A generation / language-modeling champion scored like `evaluate` scores a model."""
    import mlflow

    from lmforge.stages.generation.scoring import score

    with owned_tempdir(CHAMPION_TMP) as tmp:  # a killed gate's copy is removed next time
        ctx.log(f"scoring champion version {champion.version} on this test set")
        folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=champion.source, dst_path=str(tmp)))
        if not (folder / "config.json").exists():
            return "its files are not a transformers model folder"
        found = score(ctx, str(folder), test, ctx.config.evaluate, "champion").metrics
    return float(found[metric]) if metric in found else f"it has no {metric}"
