"""The drift report as one self-contained HTML page (inline CSS, PNG charts as base64).

Self-contained so it can be mailed, attached to a ticket or opened from a cron job's
output folder with no network and no server behind it.
"""

from __future__ import annotations

import base64
import io
import itertools
import math
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import jinja2
import matplotlib.pyplot as plt
import numpy as np

from lmforge.monitor.drift import METRIC_NAMES, DriftReport

BLUE, ORANGE = "#2b6cb0", "#dd6b20"

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 1180px; margin: 24px auto; padding: 0 16px;
       color: #1a202c; }
h1 { font-size: 1.6em; margin-bottom: 4px; }
.summary { font-size: 1.25em; font-weight: 600; padding: 10px 14px; border-radius: 6px; margin: 12px 0; }
.ok { background: #c6f6d5; color: #22543d; } .alert { background: #fed7d7; color: #742a2a; }
.muted { background: #edf2f7; color: #4a5568; }
table { border-collapse: collapse; width: 100%; margin: 12px 0 24px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e2e8f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.over td.state { color: #c53030; font-weight: 600; } tr.under td.state { color: #2f855a; }
tr.skip td.state { color: #718096; }
img { max-width: 100%; }
</style></head><body>
<h1>{{ title }}</h1>
<p>{{ report.recent_rows }} recent predictions compared with {{ report.reference_rows }} training rows.</p>
<div class="summary {{ summary_class }}">{{ summary }}</div>
{% if report.alerts %}<ul>{% for a in report.alerts %}<li>{{ a }}</li>{% endfor %}</ul>{% endif %}
{% for note in report.notes %}<p>{{ note }}</p>{% endfor %}
<table><thead><tr><th>metric</th><th>what it measures</th><th>value</th><th>threshold</th><th>state</th>
</tr></thead><tbody>
{% for m in metrics %}<tr class="{{ m.css }}"><td><code>{{ m.name }}</code></td><td>{{ m.label }}</td>
<td class="num">{{ m.value }}</td><td class="num">{{ m.threshold }}</td>
<td class="state">{{ m.state }}</td></tr>
{% endfor %}</tbody></table>
{% for name, png in charts.items() %}<h2>{{ name }}</h2>
<img alt="{{ name }}" src="data:image/png;base64,{{ png }}">
{% endfor %}
</body></html>
"""


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _grouped_bars(names: list[str], series: dict[str, list[float]], xlabel: str) -> str:
    """Reference (blue) and recent (orange) shares side by side, one group per bin/label."""
    fig, ax = plt.subplots(figsize=(11, 3.4))
    x = np.arange(len(names))
    for offset, (key, color) in zip((-0.2, 0.2), (("reference", BLUE), ("recent", ORANGE)), strict=True):
        ax.bar(x + offset, series.get(key, [0.0] * len(names)), width=0.4, color=color, label=key)
    ax.set_xticks(x, names, rotation=30 if len(names) > 8 else 0, ha="right" if len(names) > 8 else "center")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share")
    ax.legend()
    return _png(fig)


def _length_names(edges: list[float]) -> list[str]:
    if not edges:
        return ["all"]
    # Bins are (lo, hi]; lengths are whole characters, so name them by the integers inside.
    whole = [math.floor(e) for e in edges]
    names = [f"≤{whole[0]}"]
    names += [f"{lo + 1}-{hi}" if hi > lo + 1 else f"{hi}" for lo, hi in itertools.pairwise(whole)]
    return [*names, f">{whole[-1]}"]


def _charts(report: DriftReport) -> dict[str, str]:
    charts = {}
    if report.length_shares:
        names = _length_names(report.length_edges)
        charts["Text length (characters)"] = _grouped_bars(names, report.length_shares, "characters")
    if report.label_counts:
        ref, rec = report.label_counts["reference"], report.label_counts["recent"]
        labels = sorted(set(ref) | set(rec))
        shares = {
            side: [counts.get(k, 0) / max(sum(counts.values()), 1) for k in labels]
            for side, counts in (("reference", ref), ("recent", rec))
        }
        charts["Label mix (training labels vs predicted labels)"] = _grouped_bars(labels, shares, "label")
    return charts


def _metric_rows(report: DriftReport) -> list[dict[str, str]]:
    rows = []
    for name, label in METRIC_NAMES.items():
        value = report.metrics.get(name)
        limit = getattr(report.thresholds, name)
        if value is None:
            css, state, shown = "skip", f"skipped: {report.skipped.get(name, 'not measured')}", "-"
        elif value > limit:
            css, state, shown = "over", "ALERT", f"{value:.3f}"
        else:
            css, state, shown = "under", "ok", f"{value:.3f}"
        rows.append(
            {
                "name": name,
                "label": label,
                "value": shown,
                "threshold": f"{limit:.3f}",
                "state": state,
                "css": css,
            }
        )
    return rows


def render_html(report: DriftReport, title: str) -> str:
    """The whole page as a string; charts only for the metrics that were measured."""
    if not report.enough_traffic:
        summary, summary_class = "Not enough traffic to judge drift", "muted"
    elif report.alerts:
        summary, summary_class = f"{len(report.alerts)} alert{'s' if len(report.alerts) > 1 else ''}", "alert"
    else:
        summary, summary_class = "OK: no drift above the thresholds", "ok"
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(TEMPLATE).render(
        title=title,
        report=report,
        summary=summary,
        summary_class=summary_class,
        metrics=_metric_rows(report),
        charts=_charts(report),
    )


def write_html(report: DriftReport, path: Path, title: str) -> None:
    """Write the page via a temp file + rename, so a browser never opens half a page."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(render_html(report, title), encoding="utf-8")
    os.replace(tmp, path)
