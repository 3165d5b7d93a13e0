"""The `lmforge` command: parses arguments, calls the API, renders with Rich. Thin on purpose."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from lmforge.cli_keys import keys_app
from lmforge.cli_models import models_app
from lmforge.cli_predict import predict
from lmforge.cli_support import RESUME, console, err_console, errors, state
from lmforge.errors import LmforgeError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Adapt a pretrained language model to your task from one YAML file.",
)
config_app = typer.Typer(no_args_is_help=True, help="Inspect the config: schema, resolved values, docs.")
app.add_typer(config_app, name="config")
app.add_typer(keys_app, name="keys", help="API keys for `lmforge serve`: create, list, revoke.")
app.add_typer(models_app, name="models")
app.command()(predict)

_errors = errors


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks of user errors too.")) -> None:
    state["debug"] = debug


@app.command()
def init(
    data: Path = typer.Argument(..., help="A CSV, JSONL or Parquet file of your data."),
    output: Path = typer.Option(Path("lmforge.yaml"), "--output", "-o", help="Config file to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing config."),
) -> None:
    """Write a starter lmforge.yaml for DATA, guessing the task and the columns."""
    from lmforge.starter import guess, render
    from lmforge.tasks.registry import get_task

    with _errors():
        # is_symlink: a dangling link "does not exist", yet writing through it creates its target.
        if (output.exists() or output.is_symlink()) and not force:
            raise LmforgeError(f"{output} exists", hint="pass --force to overwrite it")
        found = guess(data)
        try:
            output.write_text(render(data, found, output.parent), encoding="utf-8")
        except OSError as exc:  # a missing folder, no permission
            raise LmforgeError(f"cannot write {output}: {exc.strerror or exc}") from None
        for reason in found.reasons:
            console.print(f"  [dim]•[/] {reason}")
        for warning in found.warnings:
            err_console.print(Text.assemble(("warning: ", "bold yellow"), warning), soft_wrap=True)
        classes = f", {found.classes} classes" if get_task(found.task).uses_labels else ""
        console.print(f"wrote [bold]{output}[/] ({found.task}, {found.rows:,} rows{classes})")
        console.print(f"next: [bold]lmforge run {output}[/]")


@app.command()
def auto(
    data: Path = typer.Argument(..., help="A CSV, JSONL or Parquet file of texts and labels."),
    budget: str = typer.Option(
        "15m", "--budget", "-b", help="Time budget of the whole run: 90s, 15m, 2h, 1h30m."
    ),
    out: Path = typer.Option(
        Path("."), "--out", "-o", help="Folder for lmforge.yaml and its runs/ (created if missing)."
    ),
    text_column: str | None = typer.Option(None, "--text-column", help="Text column (default: guessed)."),
    label_column: str | None = typer.Option(None, "--label-column", help="Label column (default: guessed)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing lmforge.yaml in --out."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a config key (repeatable)."),
    until: str | None = typer.Option(None, "--until", help="Stop after this stage (e.g. split)."),
) -> None:
    """The best classifier for DATA within a time budget: `init` with `model: auto`, then `run`."""
    from lmforge.starter import guess, render

    with _errors(RESUME):
        minutes = _budget_option(budget)  # a bad budget fails before anything is written
        config = out / "lmforge.yaml"
        # is_symlink: a dangling link "does not exist", yet writing through it creates its target.
        if (config.exists() or config.is_symlink()) and not force:
            raise LmforgeError(
                f"{config} exists",
                hint=f"run it with `lmforge run {config} --budget {budget}`, or pass --force to overwrite it",
            )
        found = guess(data, text_column=text_column, label_column=label_column)
        if found.task != "classification":
            raise LmforgeError(
                f"{data} looks like {found.task} data ({found.reasons[0].partition(': ')[2]}); "
                "`lmforge auto` picks among classifiers",
                hint="name the columns with --text-column and --label-column, or use `lmforge init`",
            )
        try:
            out.mkdir(parents=True, exist_ok=True)
            config.write_text(render(data, found, out, budget_minutes=minutes), encoding="utf-8")
        except OSError as exc:  # --out is a file, no permission
            raise LmforgeError(f"cannot write {config}: {exc.strerror or exc}") from None
        for reason in found.reasons:
            console.print(f"  [dim]•[/] {reason}")
        for warning in found.warnings:
            err_console.print(Text.assemble(("warning: ", "bold yellow"), warning), soft_wrap=True)
        console.print(
            f"wrote [bold]{config}[/] ({found.rows:,} rows, {found.classes} classes, "
            f"model: auto, budget {minutes:g} minutes)"
        )
        _run_config(config, force=[], overrides=set_, until=until, budget=None)


BUDGET_HELP = "Time budget of the whole run: 90s, 15m, 2h, 1h30m (overrides budget.minutes)."


@app.command()
def run(
    config: Path = typer.Argument(Path("lmforge.yaml"), help="The config file."),
    force: list[str] = typer.Option(
        [], "--force", "-f", help="Rerun this stage and its dependents (repeatable)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", "-s", help="Override a config key: train.epochs=1 (repeatable)."
    ),
    until: str | None = typer.Option(None, "--until", help="Stop after this stage (e.g. split)."),
    budget: str | None = typer.Option(None, "--budget", "-b", help=BUDGET_HELP),
) -> None:
    """Run every stage; stages whose inputs did not change are reused from earlier runs."""
    with _errors(RESUME):
        _run_config(config, force=force, overrides=set_, until=until, budget=budget)


def _run_config(
    config: Path, *, force: list[str], overrides: list[str], until: str | None, budget: str | None
) -> None:
    """What `lmforge run` does (and `lmforge auto` after writing the config)."""
    from lmforge.config import load_config
    from lmforge.console import RichRenderer
    from lmforge.pipeline.events import EventBus
    from lmforge.pipeline.runner import run_pipeline

    if budget is not None:
        overrides = [*overrides, f"budget.minutes={_budget_option(budget)!r}"]
    cfg = load_config(config, overrides=overrides)
    started = time.perf_counter()
    with RichRenderer(console) as renderer:
        result = run_pipeline(
            cfg, force=force, events=EventBus([renderer]), config_file=str(config), until=until
        )
    _summary(result, time.perf_counter() - started, cfg.task)
    _gate_outcome(result)


def _budget_option(text: str) -> float:
    """Minutes of a `--budget` value; a bad one is a one-line error naming the flag."""
    from lmforge.budget_text import DurationError, minutes_problem, parse_minutes
    from lmforge.errors import ConfigError

    try:
        minutes = parse_minutes(text)
    except DurationError as exc:
        raise ConfigError([f"--budget: {exc}"]) from None
    problem = minutes_problem(minutes, "--budget", write="{key} {n}m")
    if problem:
        raise ConfigError([problem])
    return minutes


def _summary(result, seconds: float, task: str) -> None:
    table = _comparison_table(result, task)
    if table.row_count:  # a run stopped with --until before training has nothing to compare
        console.print()
        console.print(table)
    from lmforge.console_budget import print_budget

    print_budget(console, result, seconds)
    cached = sum(result.cached.values())
    console.print(
        f"run [bold]{result.run_id}[/] finished in {seconds:.1f}s "
        f"({cached} of {len(result.cached)} stages cached)"
    )
    report = result.run_dir / "report" / "report.html"
    if report.exists():
        console.print(f"report   {report}", soft_wrap=True)
    register = result.artifacts.get("register")
    if register is not None and register.summary.get("version"):
        s = register.summary
        alias = f" as {s['alias']}" if s.get("alias") else ""
        console.print(
            f"model    {s['model_name']} version {s['version']}{alias} ({s['tracking_uri']})", soft_wrap=True
        )


# Column title and format of each metric a task's summary shows (`Task.metrics`).
METRIC_COLUMNS = {
    "accuracy": ("accuracy", ".3f"),
    "f1_macro": ("macro-F1", ".3f"),
    "f1_weighted": ("weighted-F1", ".3f"),
    "perplexity": ("perplexity", ".2f"),
    "rouge_l": ("ROUGE-L", ".3f"),
    "bleu": ("BLEU", ".1f"),
}


def _comparison_table(result, task_name: str) -> Table:
    """Baseline(s) vs the fine-tuned model on the test set, in the task's metrics."""
    from lmforge.tasks.registry import get_task

    task = get_task(task_name)
    columns = [(key, *METRIC_COLUMNS[key]) for key in task.metrics]
    table = Table(title=None, box=None, show_header=True, header_style="bold")
    table.add_column("")
    for _, title, _ in columns:
        table.add_column(title, justify="right")
    baseline = result.artifacts.get("baseline")
    prefix, name = task.baseline_prefix, task.baseline_name
    if baseline is not None and all(f"{prefix}{k}" in baseline.metrics for k, _, _ in columns):
        b = baseline.metrics
        table.add_row(name, *(format(b[f"{prefix}{k}"], f) for k, _, f in columns))
    evaluate = result.artifacts.get("evaluate")
    if evaluate is not None and all(k in evaluate.metrics for k, _, _ in columns):
        m = evaluate.metrics
        table.add_row(
            f"[bold]{_model_title(result)}[/]", *(f"[bold]{format(m[k], f)}[/]" for k, _, f in columns)
        )
    return table


def _model_title(result) -> str:
    train = result.artifacts.get("train")
    kind = train.summary.get("kind") if train is not None else None
    return {"linear": "linear model", "ensemble": "ensemble"}.get(kind or "", "fine-tuned model")


def _gate_outcome(result) -> None:
    """A failed gate is a warning, or exit 1 when `gate.required` is true."""
    gate = result.artifacts.get("gate")
    if gate is None or gate.summary.get("passed", True):
        return
    reasons = "; ".join(gate.summary.get("reasons", []))
    headline = "gate failed" if gate.summary.get("required") else "gate failed (not required)"
    err_console.print(Text.assemble((f"{headline}: ", "bold red"), reasons), soft_wrap=True)
    if gate.summary.get("required"):
        raise typer.Exit(1)


@app.command()
def runs(
    config: Path = typer.Argument(Path("lmforge.yaml"), help="Config whose output_dir holds the runs."),
    limit: int = typer.Option(20, "--limit", "-n", help="Show at most this many runs."),
) -> None:
    """List runs: id, status, duration and key metrics."""
    from lmforge.config import load_config
    from lmforge.pipeline.runs import list_runs

    with _errors():
        runs_dir = Path("runs")
        if config.exists():
            cfg = load_config(config)
            runs_dir = cfg.resolve_path(cfg.output_dir)
        found = list_runs(runs_dir)[:limit]
        if not found:
            console.print(f"no runs in {runs_dir}")
            return
        # Only the metric columns some listed run has (classification and generation differ).
        shown = [c for c in RUN_COLUMNS if any(r.get("metrics", {}).get(c[1]) is not None for r in found)]
        table = Table(header_style="bold")
        table.add_column("run id", no_wrap=True)
        table.add_column("status", no_wrap=True)
        for column in ("time", "cached", *(title for title, _, _ in shown), "version"):
            table.add_column(column, justify="right", no_wrap=True)
        # A killed run's finished_at is its last heartbeat (list_runs): its time stops growing.
        colour = {"succeeded": "green", "failed": "red", "running": "cyan", "killed": "magenta"}
        for r in found:
            m = r.get("metrics", {})
            end = r.get("finished_at") or time.time()
            stages = r.get("stages", {})
            cached = sum(1 for s in stages.values() if s.get("status") == "cached")
            table.add_row(
                r["run_id"],
                f"[{colour.get(r['status'], 'yellow')}]{r['status']}[/]",
                f"{end - r['started_at']:.1f}s",
                f"{cached}/{len(stages)}",
                *(_num(m.get(key), spec) for _, key, spec in shown),
                str(m.get("model_version") or ""),
            )
        console.print(table)


# (title, run metric, format) of `lmforge runs`.
RUN_COLUMNS = [
    ("acc", "accuracy", ".3f"),
    ("F1", "f1_macro", ".3f"),
    ("base F1", "baseline_f1_macro", ".3f"),
    ("ppl", "perplexity", ".2f"),
    ("ROUGE-L", "rouge_l", ".3f"),
]


def _num(value: float | None, spec: str = ".3f") -> str:
    return "" if value is None else format(value, spec)


@app.command()
def review(
    target: str | None = typer.Argument(
        None, help="A run id, a run folder or a review_queue.csv (default: the newest run with a queue)."
    ),
    config: Path = typer.Option(
        Path("lmforge.yaml"), "--config", "-c", help="Config whose output_dir holds the runs."
    ),
    answers: Path | None = typer.Option(
        None, "--answers", help="Answers CSV to append to (default: the config's label.reviewed)."
    ),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Review at most this many items."),
    reviewer: str | None = typer.Option(
        None, "--reviewer", help="Name saved with each answer (default: your login)."
    ),
) -> None:
    """Answer doubtful labels in the terminal; the next `lmforge run` trains on your answers."""
    from rich.prompt import Prompt

    from lmforge.data.review import pending, read_answers, read_labels, read_queue, review_session

    with _errors():
        cfg = None
        if config.exists():
            from lmforge.config import load_config

            cfg = load_config(config)
        queue = _find_queue(target, cfg)
        label_section = getattr(cfg, "label", None)
        if answers is None:
            reviewed = getattr(label_section, "reviewed", None)
            answers = cfg.resolve_path(reviewed) if cfg is not None and reviewed else None
        answers = answers or config.parent / "reviewed_labels.csv"
        todo = len(pending(read_queue(queue), read_answers(answers)))
        if todo == 0:
            console.print(
                f"nothing to review: every item in {queue} is answered in {answers}", soft_wrap=True
            )
            return
        console.print(f"{todo} items to review from {queue}", soft_wrap=True)

        def ask(prompt: str) -> str:
            return Prompt.ask(Text(prompt, style="dim"), console=console)

        try:
            counts = review_session(
                queue,
                answers,
                read_labels(queue),
                ask=ask,
                show=console.print,
                reviewer=reviewer or _login(),
                limit=limit,
            )
        except KeyboardInterrupt:
            err_console.print(f"[yellow]interrupted[/]: your answers are saved in {answers}", soft_wrap=True)
            raise typer.Exit(130) from None
        console.print(
            f"{counts['accept']} accepted, {counts['correct']} corrected, {counts['skip']} skipped; "
            f"answers in {answers}; the next `lmforge run` uses them",
            soft_wrap=True,
        )


def _find_queue(target: str | None, cfg) -> Path:
    """The queue of TARGET (file, run folder, run id), else of the newest run that has one."""
    from lmforge.data.review import QUEUE_FILE

    runs_dir = cfg.resolve_path(cfg.output_dir) if cfg is not None else Path("runs")
    if target is None:
        found = sorted(runs_dir.glob(f"*/label/{QUEUE_FILE}"), reverse=True)  # run ids sort by time
        if not found:
            raise LmforgeError(
                f"no run in {runs_dir} has a review queue",
                hint="`lmforge run` writes label/review_queue.csv when auto-labels are doubtful; "
                "or pass a run id, a run folder or a review_queue.csv",
            )
        return found[0]
    path = Path(target).expanduser()
    in_run = Path("label") / QUEUE_FILE
    for candidate in (path, path / in_run, path / QUEUE_FILE, runs_dir / target / in_run):
        if candidate.is_file():
            return candidate
    raise LmforgeError(
        f"no review queue at '{target}'",
        hint=f"pass a run id in {runs_dir}, a run folder or a review_queue.csv",
    )


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in containers without a passwd entry
        return "unknown"


@app.command()
def eject(
    run_id: str = typer.Argument(..., metavar="RUN", help="A run id (see `lmforge runs`) or a run folder."),
    out: Path = typer.Option(Path("train_script.py"), "--out", "-o", help="Script to write."),
    config: Path = typer.Option(
        Path("lmforge.yaml"), "--config", "-c", help="Config whose output_dir holds the runs."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing script."),
) -> None:
    """Write a standalone transformers script that reproduces a run's training."""
    from lmforge.eject import eject as eject_run
    from lmforge.eject import find_run

    with _errors():
        runs_dir, base_dir = Path("runs"), Path.cwd()
        if config.exists():
            from lmforge.config import load_config

            cfg = load_config(config)
            runs_dir, base_dir = cfg.resolve_path(cfg.output_dir), cfg.base_dir
        run_dir = find_run(run_id, runs_dir)
        eject_run(run_dir, base_dir, out, force=force)
        console.print(f"wrote [bold]{out}[/] (run {run_dir.name})", soft_wrap=True)
        console.print(f"next: [bold]python {out} --max-steps 10[/] for a quick check", soft_wrap=True)


@config_app.command("schema")
def config_schema() -> None:
    """Print the config's JSON schema (every key, type, default and description)."""
    from lmforge.config import Config

    print(json.dumps(Config.model_json_schema(by_alias=True), indent=2))


@config_app.command("show")
def config_show(
    config: Path = typer.Argument(Path("lmforge.yaml"), help="The config file."),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a config key (repeatable)."),
) -> None:
    """Print the fully resolved config: your values plus every default."""
    from lmforge.config import load_config

    with _errors():
        sys.stdout.write(load_config(config, overrides=set_).to_yaml())


@config_app.command("docs")
def config_docs() -> None:
    """Print the config reference as Markdown (docs/config.md is generated from this)."""
    from lmforge.config_docs import markdown

    sys.stdout.write(markdown())


@app.command()
def monitor(
    name: str = typer.Argument(..., help="Registered model name (its champion) or NAME@VERSION."),
    config: Path = typer.Option(Path("lmforge.yaml"), "--config", "-c", help="The project's config."),
    hours: float = typer.Option(24.0, "--hours", help="Compare the last HOURS of traffic (0: all)."),
    embeddings: bool = typer.Option(True, "--embeddings/--no-embeddings", help="minilm-l6 embedding drift."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow registry URI."),
) -> None:
    """Compare recent traffic with the training data; exit 3 when a drift alert fires."""
    from lmforge.config import load_config
    from lmforge.monitor.run import monitor as run_monitor
    from lmforge.registry import tracking_uri as configured_uri

    with _errors():
        cfg = load_config(config)
        result = run_monitor(
            cfg,
            name,
            tracking_uri=tracking_uri or configured_uri(cfg),
            hours=hours,
            use_embeddings=embeddings,
        )
        report = result.report
        table = Table(title=f"{result.model} version {result.version}: {report.status}")
        for column in ("metric", "value", "threshold"):
            table.add_column(column)
        for metric, value in report.metrics.items():
            limit = getattr(report.thresholds, metric, None)
            shown = "skipped: " + report.skipped.get(metric, "") if value is None else f"{value:.3f}"
            table.add_row(metric, shown, "" if limit is None else f"{limit:g}")
        console.print(table)
        for note in report.notes:
            console.print(f"  [dim]{note}[/]")
        for alert in report.alerts:
            err_console.print(f"[bold red]ALERT[/] {alert}")
        console.print(f"page   {result.html}\njson   {result.json} (read by the server's /metrics)")
        if report.alerts:
            raise typer.Exit(3)


@app.command()
def retrain(
    config: Path = typer.Argument(Path("lmforge.yaml"), help="The project's config."),
    accept_all: bool = typer.Option(
        False, "--accept-all", help="Accept every pending label correction first."
    ),
    feedback_url: str | None = typer.Option(
        None, "--feedback-url", help="Feedback store (default: serve's)."
    ),
    set_: list[str] = typer.Option([], "--set", "-s", help="Override a config key (repeatable)."),
) -> None:
    """Merge accepted feedback into the training data, rerun, and promote only if the gate passes."""
    from lmforge.console import RichRenderer
    from lmforge.pipeline.events import EventBus
    from lmforge.retrain import retrain as run_retrain

    with _errors("run `lmforge retrain` again to resume"):
        started = time.perf_counter()
        with RichRenderer(console) as renderer:
            result = run_retrain(
                config,
                overrides=set_,
                accept_all=accept_all,
                store_url=feedback_url,
                events=EventBus([renderer]),
            )
        console.print(f"{result.feedback_rows} feedback rows merged into {result.merged_file}")
        cfg_task = result.pipeline.artifacts["train"].manifest["config"]["task"]
        _summary(result.pipeline, time.perf_counter() - started, cfg_task)
        _gate_outcome(result.pipeline)


@app.command()
def ui(
    config: Path = typer.Option(Path("lmforge.yaml"), "--config", "-c", help="The project's config."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    port: int = typer.Option(8080, "--port", help="TCP port."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow registry URI."),
    no_auth: bool = typer.Option(False, "--no-auth", help="No login; binds 127.0.0.1 only."),
) -> None:
    """A web app over the project: runs, reports, registry, monitoring. Log in with an API key."""
    import uvicorn

    from lmforge.ui.app import create_ui_app, project_for

    with _errors():
        if no_auth and host not in ("127.0.0.1", "localhost", "::1"):
            raise LmforgeError(f"--no-auth refuses to bind {host}", hint="drop --host, or log in with keys")
        if no_auth:
            err_console.print("[bold yellow]WARNING: --no-auth: anyone on this machine is admin.[/]")
        app_ = create_ui_app(project_for(config, tracking_uri), auth=not no_auth)
        console.print(f"lmforge ui for [bold]{config}[/] on http://{host}:{port}")
        # proxy_headers off: the UI itself decides which peers' X-Forwarded-* to believe
        # (ui.trusted_proxies), and needs the real peer address to decide it.
        uvicorn.run(app_, host=host, port=port, log_level="warning", proxy_headers=False)


@app.command()
def serve(
    ref: str = typer.Argument(..., help="Registered model: NAME@champion, NAME@challenger or NAME@3."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Read the serve: and tracking: sections."
    ),
    host: str | None = typer.Option(None, "--host", help="Interface to bind (default 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="TCP port (default 8000)."),
    workers: int | None = typer.Option(None, "--workers", help="uvicorn worker processes."),
    runtime: str | None = typer.Option(None, "--runtime", help="auto | onnx | torch (classification)."),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow registry (default: the config's)."
    ),
    no_auth: bool = typer.Option(False, "--no-auth", help="No API keys; binds 127.0.0.1 only."),
) -> None:
    """Serve a registered model over HTTP (FastAPI + uvicorn) with API keys and metrics."""
    import os

    import uvicorn

    from lmforge.config import ServeConfig, load_config
    from lmforge.registry import default_uri
    from lmforge.serve.app import ENV_SETTINGS, docs_public

    with _errors():
        cfg_file = load_config(config) if config else None
        base = cfg_file.serve if cfg_file else ServeConfig()
        overrides = {"host": host, "port": port, "workers": workers, "runtime": runtime}
        cfg = ServeConfig(**{**base.model_dump(), **{k: v for k, v in overrides.items() if v is not None}})
        if no_auth and cfg.host not in ("127.0.0.1", "localhost", "::1"):
            raise LmforgeError(
                f"--no-auth refuses to bind {cfg.host}: without keys anyone who can reach it may use it",
                hint="drop --host, or create keys with `lmforge keys create`",
            )
        if cfg_file and tracking_uri is None:
            from lmforge.registry import tracking_uri as configured_uri

            tracking_uri = configured_uri(cfg_file)
        uri = tracking_uri or default_uri()
        if no_auth:
            err_console.print(
                "[bold yellow]WARNING: --no-auth: every route is open to anyone on this machine; "
                "bound to 127.0.0.1 only.[/]"
            )
        os.environ[ENV_SETTINGS] = json.dumps(
            {"ref": ref, "tracking_uri": uri, "serve": cfg.model_dump(), "auth": not no_auth}
        )
        docs = "docs: /docs" if docs_public(cfg) else "docs off: serve.public_docs"
        console.print(f"serving [bold]{ref}[/] from {uri} on http://{cfg.host}:{cfg.port} ({docs})")
        uvicorn.run(
            "lmforge.serve.app:app_from_env",
            factory=True,
            host=cfg.host,
            port=cfg.port,
            workers=cfg.workers,
            log_level="warning",
        )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
