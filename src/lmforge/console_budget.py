"""The end-of-run tables of a budgeted run: the portfolio's candidates, and the plan against
the seconds each stage really took, with every decision the planner made and why."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_budget(console: Console, result: Any, seconds: float) -> None:
    budget = getattr(result, "budget", None)
    if budget is None:
        return
    train = result.artifacts.get("train")
    if train is not None and train.has("portfolio.json"):
        console.print()
        console.print(portfolio_table(train.json("portfolio")))
    console.print()
    console.print(plan_table(budget.table()))
    for decision in budget.decisions:
        console.print(f"  [yellow]{decision['stage']}[/]: {decision['decision']} ({decision['reason']})")
    if budget.seconds != float("inf"):
        share = seconds / budget.seconds
        style = "green" if share <= 1.0 else "yellow" if share <= 1.05 else "red"
        console.print(
            f"budget   [{style}]{seconds:.0f} s of {budget.seconds:.0f} s ({share:.0%})[/]", soft_wrap=True
        )


def portfolio_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", title="candidates (validation)", title_justify="left")
    for column, justify in (("", "left"), ("kind", "left"), ("status", "left"), ("score", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("s", justify="right")
    table.add_column("why", overflow="fold")
    for row in rows:
        score = row.get("validation_score")
        name = f"[bold]{row['candidate']}[/]" if row.get("chosen") else row["candidate"]
        table.add_row(
            name,
            row["kind"],
            row["status"],
            "" if score is None else f"{score:.4f}",
            f"{row['seconds']:.0f}",
            row.get("reason", ""),
        )
    return table


def plan_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", title="budget plan (seconds)", title_justify="left")
    table.add_column("stage")
    table.add_column("planned", justify="right")
    table.add_column("actual", justify="right")
    for row in rows:
        actual = row["actual_seconds"]
        shown = "" if actual is None else f"{actual:.1f}" + (" (cached)" if row["cached"] else "")
        table.add_row(row["stage"], f"{row['planned_seconds']:.1f}", shown)
    return table
