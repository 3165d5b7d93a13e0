"""`lmforge eject`: write a standalone training script that reproduces a run's training.

The script uses transformers (plus torch, pandas and scikit-learn; peft when the run
trained LoRA adapters) and never imports lmforge: the model folder, labels, data files
and the hyperparameters the run trained with are written into it as constants. It is
rendered from `eject_template.py.j2`.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from lmforge.config import TrainConfig
from lmforge.errors import LmforgeError
from lmforge.tasks.registry import get_task

TEMPLATE = "eject_template.py.j2"
LINEAR_TEMPLATE = "eject_linear.py.j2"  # a linear run: scikit-learn only
LINE_LENGTH = 88  # ruff's default: the script passes `ruff check` in any project
_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,40}$")  # may appear in the script's docstring as is


@dataclass
class EjectSpec:
    """What the script needs to know about a run, read from its folder."""

    run_dir: Path
    model_reference: str
    model_folder: Path
    labels: list[str]
    train_file: Path
    validation_file: Path
    hyperparameters: TrainConfig
    tuned: list[str] = field(default_factory=list)
    restarts: list[dict[str, Any]] = field(default_factory=list)
    ensemble: bool = False
    class_weights: list[float] | None = None  # per label, when the run weighted its loss
    kind: str = "transformer"  # models/kinds.py: transformer, linear, ensemble
    linear: dict[str, Any] | None = None  # the linear model's settings (linear_settings)
    weights: dict[str, float] | None = None  # an ensemble's member weights by kind
    test_file: Path | None = None


def find_run(target: str, runs_dir: Path) -> Path:
    """The run folder for TARGET: a run id in `runs_dir`, or a run folder."""
    for candidate in (runs_dir / target, Path(target).expanduser()):
        if (candidate / "run.json").is_file() or (candidate / "config.yaml").is_file():
            return candidate.resolve()
    raise LmforgeError(
        f"no run '{target}' in {runs_dir}",
        hint="`lmforge runs` lists the run ids; or pass a run folder",
    )


def read_run(run_dir: Path, base_dir: Path) -> EjectSpec:
    """Read a finished run's train stage; resolve its model to a local folder."""
    from lmforge.models.load import model_folder
    from lmforge.models.resolve import resolve_model

    train = run_dir / "train"
    manifest_file = train / "manifest.json"
    if not manifest_file.is_file():
        raise LmforgeError(
            f"run {run_dir.name} has no finished train stage",
            hint="eject a run that trained a model; `lmforge run` (without --until) trains one",
        )
    manifest = _read_json(manifest_file)
    task = manifest.get("config", {}).get("task", "classification")
    if not get_task(task).uses_labels:
        raise LmforgeError(
            f"run {run_dir.name} is a {task} run; eject writes classification scripts only so far",
            hint="its train/model/ folder (and model-adapter/ with LoRA) loads with transformers / peft",
        )
    summary = manifest.get("summary", {})
    hyperparameters = _hyperparameters(run_dir)
    for name in ("split/labels.json", "augment/train.parquet", "split/validation.parquet"):
        if not (run_dir / name).is_file():
            raise LmforgeError(f"run {run_dir.name} has no {name}", hint="is the run folder complete?")
    kind, linear, member_weights = _kind_facts(train / "model")
    if kind == "linear":
        return EjectSpec(
            run_dir=run_dir,
            model_reference="linear",
            model_folder=(train / "model").resolve(),
            labels=[str(label) for label in _read_json(run_dir / "split/labels.json")],
            train_file=run_dir / "augment/train.parquet",
            validation_file=run_dir / "split/validation.parquet",
            test_file=run_dir / "split/test.parquet",
            hyperparameters=hyperparameters,
            kind=kind,
            linear=linear,
        )
    # Auto mode names the candidate in `model` and the encoder in `base_model`.
    reference = summary.get("base_model") or summary.get("model") or manifest.get("config", {}).get("model")
    if not isinstance(reference, str) or not reference:
        raise LmforgeError(f"run {run_dir.name}: train/manifest.json names no model")
    folder = model_folder(resolve_model(reference, base_dir))
    labels = [str(label) for label in _read_json(run_dir / "split/labels.json")]
    weights = None
    if hyperparameters.class_weights == "balanced":
        import pandas as pd

        from lmforge.training.recipe import class_weight_vector

        train_labels = pd.read_parquet(run_dir / "augment/train.parquet", columns=["label"])["label"]
        weights = [round(w, 6) for w in class_weight_vector(train_labels.tolist(), labels)]
    return EjectSpec(
        run_dir=run_dir,
        model_reference=reference,
        model_folder=folder.resolve(),
        labels=labels,
        train_file=run_dir / "augment/train.parquet",
        validation_file=run_dir / "split/validation.parquet",
        hyperparameters=hyperparameters,
        tuned=sorted(summary.get("tuned") or {}),
        restarts=list(summary.get("restarts") or []),
        ensemble=bool(summary.get("ensemble")),
        class_weights=weights,
        kind=kind,
        linear=linear,
        weights=member_weights,
    )


def _kind_facts(model_dir: Path) -> tuple[str, dict[str, Any] | None, dict[str, float] | None]:
    """The model's kind, its linear part's settings and an ensemble's weights by member kind."""
    from lmforge.models.kinds import read_kind

    record = read_kind(model_dir) if model_dir.is_dir() else {"kind": "transformer"}
    kind = str(record["kind"])
    if kind == "linear":
        return kind, linear_settings(model_dir), None
    if kind == "ensemble":
        from lmforge.models.scorer import check_ensemble

        _, members = check_ensemble(record, model_dir / "lmforge_kind.json")
        linear = next(m for m in members if m["kind"] == "linear")
        weights = {str(m["kind"]): float(m["weight"]) for m in members}
        return kind, linear_settings(model_dir / linear["path"]), weights
    return kind, None, None


def linear_settings(folder: Path) -> dict[str, Any]:
    """What the script needs to build the same linear model: each TF-IDF vectoriser's
    settings and the head's, read from the fitted pipeline (loaded through skops' trusted
    types, as everywhere)."""
    from lmforge.classical.linear import load_linear

    model = load_linear(folder)
    features = []
    for name, vectoriser in model.pipeline.named_steps["features"].transformer_list:
        p = vectoriser.get_params()
        features.append(
            {
                "name": str(name),
                "analyzer": str(p["analyzer"]),
                "ngram_range": [int(n) for n in p["ngram_range"]],
                "min_df": p["min_df"],
                "max_features": p["max_features"],
                "sublinear_tf": bool(p["sublinear_tf"]),
                "lowercase": bool(p["lowercase"]),
            }
        )
    head = model.pipeline.named_steps["head"]
    if model.head == "logistic_regression":
        p = head.get_params()
        return {
            "head": model.head,
            "features": features,
            "C": float(p["C"]),
            "class_weight": p["class_weight"],
            "max_iter": int(p["max_iter"]),
            "seed": p["random_state"],
        }
    svc = head.estimator.get_params()
    return {
        "head": "linear_svc",
        "features": features,
        "C": float(svc["C"]),
        "class_weight": svc["class_weight"],
        "folds": int(head.cv) if isinstance(head.cv, int) else 5,
        "seed": svc["random_state"],
    }


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _hyperparameters(run_dir: Path) -> TrainConfig:
    """The TrainConfig the run trained with (tuning overrides included), else config.yaml's."""
    import yaml

    used = run_dir / "train" / "hyperparameters.json"
    if used.is_file():
        values = _read_json(used)
    else:
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
        values = config.get("train") or {}
    # Keys this lmforge version does not know (an older or newer run) are dropped; a run
    # from before the fine-tune recipe trained with the settings it had then.
    known = {**BEFORE_RECIPE, **{k: v for k, v in values.items() if k in TrainConfig.model_fields}}
    return TrainConfig.model_validate(known)


# What runs saved before `auto` settings existed trained with.
BEFORE_RECIPE = {"pooling": "default", "class_weights": "none", "group_by_length": False}


def render_script(spec: EjectSpec, out: Path, output_dir: Path) -> str:
    """The script's source text."""
    from jinja2 import Environment, FunctionLoader, StrictUndefined

    env = Environment(
        loader=FunctionLoader(_template_source),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=StrictUndefined,
        autoescape=False,  # Python source: values go through the `py` filter
    )
    env.filters["py"] = python_literal
    env.filters["comment"] = comment
    run_id_doc = spec.run_dir.name if _SAFE.match(spec.run_dir.name) else "(see RUN_DIR)"
    script_name = out.name if _SAFE.match(out.name) else "train_script.py"
    if spec.kind == "linear":
        return env.get_template(LINEAR_TEMPLATE).render(
            run_id_doc=run_id_doc,
            created=time.strftime("%Y-%m-%d"),
            script_name=script_name,
            run_dir=str(spec.run_dir),
            labels=spec.labels,
            train_file=str(spec.train_file),
            test_file=str(spec.test_file),
            output=str(output_dir.with_name(output_dir.name + "-metrics.json")),
            linear=spec.linear,
        )
    template = env.get_template(TEMPLATE)
    hp = spec.hyperparameters
    note = "Hyperparameters: train/hyperparameters.json of the run"
    if spec.tuned:
        note += f" (tuning chose {', '.join(spec.tuned)})"
    restarts_note = ""
    if spec.restarts:
        final = spec.restarts[-1].get("new_learning_rate")
        restarts_note = (
            f"The run's loss diverged {len(spec.restarts)} time(s); it restarted each time with "
            f"a lower learning rate, finally {final!r}. Try that if training diverges here."
        )
    return template.render(
        run_id_doc=run_id_doc,
        created=time.strftime("%Y-%m-%d"),
        script_name=script_name,
        run_dir=str(spec.run_dir),
        model_reference=spec.model_reference,
        model_folder=str(spec.model_folder),
        labels=spec.labels,
        train_file=str(spec.train_file),
        validation_file=str(spec.validation_file),
        output_dir=str(output_dir),
        hp=hp,
        hyperparameters_note=note + ".",
        restarts_note=restarts_note,
        fgm=hp.adversarial == "fgm",
        mean_pooling=hp.pooling == "mean",
        class_weights=spec.class_weights,
        lora=hp.method == "lora",
        ensemble=spec.ensemble,
        linear=spec.linear,
        weights=spec.weights,
    )


def _template_source(name: str) -> str:
    return resources.files("lmforge").joinpath(name).read_text(encoding="utf-8")


def eject(run_dir: Path, base_dir: Path, out: Path, *, force: bool = False) -> Path:
    """Write the training script of `run_dir` to `out`; returns the absolute path written.

    The model is saved by default to `<run id>-model/` next to the script.
    """
    if out.exists() and not force:
        raise LmforgeError(f"{out} exists", hint="pass --force to overwrite it")
    spec = read_run(run_dir, base_dir)
    out = out.expanduser().resolve()
    source = render_script(spec, out, out.parent / f"{run_dir.name}-model")
    compile(source, str(out), "exec")  # a template bug must not leave a broken script
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(source, encoding="utf-8")
    return out


def python_literal(value: Any) -> str:
    """`value` as Python source for a top-level constant (`NAME = <this>`), kept within
    LINE_LENGTH: a long string becomes a parenthesised concatenation, one cut per line,
    and a long list puts one item per line."""
    if isinstance(value, str):
        inline = _string(value)
        if len(inline) <= LINE_LENGTH - 20:  # room for the longest constant name
            return inline
        lines = "\n".join(f"    {part}" for part in _string_parts(value, LINE_LENGTH - 4))
        return f"(\n{lines}\n)"
    if isinstance(value, (list, tuple)):
        items = [python_literal(item) if isinstance(item, str) else repr(item) for item in value]
        inline = "[" + ", ".join(items) + "]"
        if len(inline) <= LINE_LENGTH - 20 and "\n" not in inline:
            return inline
        body = "\n".join(f"{textwrap.indent(item, '    ')}," for item in items)
        return f"[\n{body}\n]"
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    raise TypeError(f"no Python literal for {type(value).__name__}")


def _string(text: str) -> str:
    # JSON string escapes (\" \\ \n \uXXXX ...) are all valid in Python strings;
    # double quotes match the style ruff's formatter uses.
    return json.dumps(text, ensure_ascii=False)


def _string_parts(text: str, width: int) -> list[str]:
    """Literals that concatenate to `text`, each at most `width` long; paths are cut after '/'."""
    pieces = [p for p in re.split(r"(?<=/)", text) if p]
    parts: list[str] = []
    current = ""
    for piece in pieces:
        if len(_string(current + piece)) <= width:
            current += piece
            continue
        if current:
            parts.append(_string(current))
            current = ""
        while len(_string(piece)) > width:  # one piece too long for a line: cut it
            cut = width - 2
            while len(_string(piece[:cut])) > width:
                cut -= 1
            space = piece.rfind(" ", 0, cut)
            cut = space + 1 if space > 0 else cut  # after a space, if there is one
            parts.append(_string(piece[:cut]))
            piece = piece[cut:]
        current = piece
    if current:
        parts.append(_string(current))
    return parts


def comment(text: str) -> str:
    """Text as `#` comment lines within LINE_LENGTH."""
    return textwrap.fill(
        text, width=LINE_LENGTH, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False
    )
