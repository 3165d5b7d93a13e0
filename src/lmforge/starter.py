"""`lmforge init`: look at a data file and write a starter config with guessed columns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lmforge.config import ValidateConfig
from lmforge.datafiles import DataFile, read_data_file, require_text
from lmforge.errors import DataError
from lmforge.tasks.registry import get_task

TEXT_NAMES = ("text", "sentence", "utterance", "message", "content", "review", "body", "query", "input")
LABEL_NAMES = ("label", "labels", "intent", "category", "class", "target", "sentiment", "topic", "y")


@dataclass
class Guess:
    """What `init` inferred from the data, with the reason for each choice."""

    task: str
    text_column: str
    label_column: str
    rows: int
    classes: int
    reasons: list[str]
    warnings: list[str] = field(default_factory=list)


GENERATION_LAYOUTS = (("messages",), ("instruction", "output"), ("prompt", "response"))


def guess(path: Path, *, text_column: str | None = None, label_column: str | None = None) -> Guess:
    """Guess the task and the text / label columns of a data file; a column given by the
    caller (`lmforge auto --text-column`) is taken as is and makes the task classification."""
    data = read_data_file(path)
    frame = data.frame
    columns = data.columns
    for given, option in ((text_column, "--text-column"), (label_column, "--label-column")):
        if given is not None and given not in columns:
            raise DataError(f"{option} '{given}' is not a column; columns: {', '.join(columns)}", file=path)
    chosen = text_column is not None or label_column is not None
    for layout in GENERATION_LAYOUTS if not chosen else ():
        if set(layout) <= set(columns):
            shown = " + ".join(f"'{c}'" for c in layout)
            return Guess("generation", "", "", len(frame), 0, [f"task generation: columns {shown}"])
    if not chosen and (data.format == "txt" or columns == ["text"]):
        reason = "a plain text file" if data.format == "txt" else "a single text column"
        return Guess("language-modeling", "text", "", len(frame), 0, [f"task language-modeling: {reason}"])
    if len(columns) < 2:
        raise DataError(
            f"found {len(columns)} column(s); classification needs a text and a label column", file=path
        )
    texts = {c: frame[c].dropna().astype(str) for c in columns}
    mean_len = {c: float(v.str.len().mean() or 0) for c, v in texts.items()}
    distinct = {c: int(v.nunique()) for c, v in texts.items()}
    reasons = []
    named = next((c for c in columns if c.lower() in TEXT_NAMES and c != label_column), None)
    if text_column:
        text_col = text_column
        reasons.append(f"text column '{text_col}': --text-column")
    elif named:
        text_col = named
        reasons.append(f"text column '{text_col}': its name")
    else:
        text_col = max((c for c in columns if c != label_column), key=lambda c: mean_len[c])
        reasons.append(
            f"text column '{text_col}': longest values ({mean_len[text_col]:.0f} chars on average)"
        )
    rest = [c for c in columns if c != text_col]
    named = next((c for c in rest if c.lower() in LABEL_NAMES), None)
    if label_column:
        if label_column == text_col:
            raise DataError(f"--label-column '{label_column}' is also the text column", file=path)
        label_col = label_column
        reasons.append(f"label column '{label_col}': --label-column")
    elif named:
        label_col = named
        reasons.append(f"label column '{label_col}': its name")
    else:
        label_col = min(rest, key=lambda c: (distinct[c], mean_len[c]))
        reasons.append(f"label column '{label_col}': fewest distinct values ({distinct[label_col]})")
    require_text(data, text_col, f"`init` picked it as the text column: {reasons[0].partition(': ')[2]}")
    warnings = _class_warnings(data, label_col)
    return Guess("classification", text_col, label_col, len(frame), distinct[label_col], reasons, warnings)


def _class_warnings(data: DataFile, column: str) -> list[str]:
    """Refuse labels no run can train on (none, one class); warn of classes that the
    validate stage will stop on (fewer than `validate.min_rows_per_class` rows)."""
    labels = data.frame[column].dropna().astype(str).str.strip()
    counts = labels[labels != ""].value_counts()
    if len(counts) < 2:
        found = "no row has a label" if counts.empty else f"only one class ('{counts.index[0]}')"
        raise DataError(
            f"{found}; classification needs at least two classes",
            file=data.path,
            column=column,
            hint="label a few rows of each class; lmforge labels the rest",
        )
    least = int(ValidateConfig.model_fields["min_rows_per_class"].default)
    small = counts[counts < least]
    if small.empty:
        return []
    listed = ", ".join(f"'{k}' ({v})" for k, v in small.head(5).items()) + (", ..." if len(small) > 5 else "")
    return [
        f"{data.path.name}, column '{column}': {len(small)} of {len(counts)} classes have fewer than "
        f"{least} rows: {listed}; `lmforge run` stops on them unless you add rows, remove those "
        "classes or lower validate.min_rows_per_class"
    ]


def render(path: Path, found: Guess, config_dir: Path, *, budget_minutes: float | None = None) -> str:
    """The starter YAML, with comments saying what each section does. With `budget_minutes`
    (`lmforge auto`): `model: auto` and that budget, so the run picks the best model in time."""
    try:
        data_path = path.resolve().relative_to(config_dir.resolve()).as_posix()
    except ValueError:
        data_path = str(path.resolve())
    project = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in path.stem) or "lmforge"
    if not get_task(found.task).uses_labels:
        return _render_causal(data_path, project, path.name, found)
    command = "init" if budget_minutes is None else "auto"
    model = _model_lines(budget_minutes)
    return f"""\
# lmforge config written by `lmforge {command} {path.name}` ({found.rows:,} rows, {found.classes} classes).
# `lmforge config show` prints every setting with its default; `lmforge config schema` documents them.
project: {project}            # names the MLflow experiment and the registered model
task: {found.task}
data:
  train: {data_path}
  test: null                  # a separate test file; otherwise split from train
  text_column: {found.text_column}
  label_column: {found.label_column}
split: {{validation: 0.1, test: 0.1, seed: 42}}
{model}train: {{method: full, batch_size: 32}}   # epochs, learning_rate, max_length: auto (see the report)
tune: {{enabled: false, trials: 20, pruner: successive_halving}}   # true: optuna search before training
gate: {{min_gain: 0.0, required: false}}   # must beat TF-IDF (and the registry's champion) to be champion
tracking: {{uri: sqlite:///mlruns.db}}
"""


def _model_lines(budget_minutes: float | None) -> str:
    if budget_minutes is None:
        return (
            "model: minilm-l6              # a zoo name, a local folder or .gguf file, a hub id; "
            "`auto` or a list to select\n"
        )
    budget = f"budget: {{minutes: {budget_minutes:g}}}"
    return (
        "model: auto                   # the best of TF-IDF models, embeddings + LR, fine-tuned "
        "encoders, ensembles\n"
        f"{budget:<29} # the whole run ends in time, export and register included (90s, 15m, 2h)\n"
    )


def _render_causal(data_path: str, project: str, name: str, found: Guess) -> str:
    task = get_task(found.task)
    gate = (
        f"gate: {{metric: {task.gate_metric}, min_gain: 0.0, required: false}}"
        "   # must beat the base model (and the champion)"
    )
    answers = (
        "evaluate: {max_new_tokens: 64, generation_rows: 32}   # answers generated and scored (CPU is slow)\n"
    )
    if "evaluate.generation_rows" in task.unused_keys:  # language-modeling generates nothing
        answers = ""
    return f"""\
# lmforge config written by `lmforge init {name}` ({found.rows:,} rows).
# `lmforge config show` prints every setting with its default; `lmforge config schema` documents them.
project: {project}            # names the MLflow experiment and the registered model
task: {found.task}
data:
  train: {data_path}
  test: null                  # a separate test file; otherwise split from train
split: {{validation: 0.1, test: 0.1, seed: 42}}
model: smollm2-135m           # a zoo name, a local causal LM folder or .gguf file, a hub id
train: {{method: lora, batch_size: 4}}   # epochs, learning_rate, max_length: auto (see the report)
{answers}{gate}
tracking: {{uri: sqlite:///mlruns.db}}
"""
