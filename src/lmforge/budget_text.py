"""Durations as people write them ("90s", "15m", "2h", "1h30m", a bare number of minutes),
and the bounds a run's time budget must respect. Shared by the config and the CLI flags, so
`budget: 15m` and `--budget 15m` read and refuse alike."""

from __future__ import annotations

import math
import re

# Below this no run can end in time: ingest, the cheapest model (one TF-IDF fit), evaluate and
# register need about that on 2 cores; a causal task needs more (pipeline/budget.py
# `minimum_seconds`, checked when the run starts).
MIN_BUDGET_MINUTES = 2.0
# A week: a longer budget is a typo (10000h), not a plan.
MAX_BUDGET_MINUTES = 7 * 24 * 60.0

# ASCII digits only ([0-9], not \d): full-width or Arabic-Indic digits are refused, not read.
_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
_DURATION = re.compile(rf"(?:({_NUMBER})h)?(?:({_NUMBER})m)?(?:({_NUMBER})s)?")
_EXAMPLES = "write 90s, 15m, 2h or 1h30m"


class DurationError(ValueError):
    """A duration that cannot be read; the message says what was given and what to write."""


def parse_minutes(value: object, examples: str = _EXAMPLES) -> float:
    """Minutes in `value`: a number (minutes) or text like "90s", "15m", "2h", "1h30m", "15".

    Only the shape is checked here (finite, not negative); `minutes_problem` checks the range.
    """
    if isinstance(value, bool):  # YAML `yes`/`true` are bools, and bool is an int subclass
        raise DurationError(f"cannot read {value!r}: {examples}")
    if isinstance(value, int | float):
        try:
            minutes = float(value)
        except OverflowError:  # an int too large for a float: 10**400
            minutes = math.inf
    elif isinstance(value, str):
        minutes = _parse_text(value, examples)
    else:
        raise DurationError(f"cannot read {value!r}: {examples}")
    if math.isnan(minutes):
        raise DurationError(f"cannot read {value!r}: {examples}")
    return minutes


def _parse_text(text: str, examples: str) -> float:
    cleaned = text.strip().lower()
    if len(cleaned) > 32:  # no duration is that long; do not echo a pasted essay back
        raise DurationError(f"cannot read {cleaned[:32] + '...'!r}: {examples}")
    if re.fullmatch(_NUMBER, cleaned):
        return float(cleaned)
    match = _DURATION.fullmatch(cleaned)
    if not cleaned or match is None or not any(match.groups()):
        raise DurationError(f"cannot read {text.strip()!r}: {examples}")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 60 + minutes + seconds / 60


def minutes_problem(minutes: float, key: str, write: str = "{key}: {n}") -> str | None:
    """Why `minutes` cannot be a run's budget (one line naming `key`), or None when it can.
    `write` shows the fix in the user's own syntax ("budget.minutes: 2", "--budget 2m")."""
    shown = f"{minutes:g}"
    if minutes <= 0:
        return f"{key}: must be > 0 minutes, got {shown}"
    if minutes < MIN_BUDGET_MINUTES:
        return (
            f"{key}: {shown} is below the minimum of {MIN_BUDGET_MINUTES:g} minutes (ingest, the "
            f"cheapest model, evaluate and register need about that on 2 cores); "
            f"set {write.format(key=key, n=f'{MIN_BUDGET_MINUTES:g}')} or more"
        )
    if minutes > MAX_BUDGET_MINUTES:
        return (
            f"{key}: {shown} minutes is above the cap of {MAX_BUDGET_MINUTES:g} minutes (7 days); "
            "a longer budget is almost certainly a typo"
        )
    return None


def format_duration(seconds: float) -> str:
    """`h:mm:ss` / `m:ss` for progress lines; negative values keep their sign."""
    if not math.isfinite(seconds):
        return "?"
    sign = "-" if seconds < 0 else ""
    whole = round(abs(seconds))
    hours, rest = divmod(whole, 3600)
    mins, secs = divmod(rest, 60)
    return f"{sign}{hours}:{mins:02d}:{secs:02d}" if hours else f"{sign}{mins}:{secs:02d}"
