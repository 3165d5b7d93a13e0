"""clean (generation, language-modeling): repair text, mask personal data, drop exact
duplicates. Newlines are kept (dialogues and code need them); runs of spaces are not
collapsed. Every removed row is listed in `removed.csv` with its reason.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pandas as pd

from lmforge.config import CleanConfig
from lmforge.data.dedup import normal_form
from lmforge.data.pii import PiiDetector
from lmforge.data.textfix import TextFixer
from lmforge.pipeline.context import Inputs, StageContext, StageResult
from lmforge.tasks.registry import get_task


def run(ctx: StageContext, cfg: CleanConfig, inputs: Inputs) -> StageResult:
    validate = inputs["validate"]
    lm = get_task(ctx.config.task).raw_text
    fixer = TextFixer(unicode=cfg.fix_unicode, html=cfg.strip_html, whitespace=False)
    detector = PiiDetector(cfg.pii_types, phone_region=cfg.phone_region) if cfg.pii != "off" else None
    result = StageResult()
    removed, pii_counts, repaired = [], Counter[str](), 0
    for name in ("train", "validation", "test"):
        if not validate.has(f"{name}.parquet"):
            continue
        table = validate.table(name)
        column = "text" if lm else "messages"
        keep, reasons, values = [], [], []
        seen: set[str] = set()
        for value in table[column]:
            if not cfg.enabled:
                keep.append(True)
                reasons.append("")
                values.append(value)
                continue
            texts = [value] if lm else [m["content"] for m in json.loads(value)]
            fixed = [fixer.fix(t)[0].strip() for t in texts]
            repaired += sum(a != b for a, b in zip(texts, fixed, strict=True))
            found: dict[str, int] = {}
            if detector is not None:
                masked = [detector.mask(t) for t in fixed]
                found = dict(sum((Counter(c) for _, c in masked), Counter()))
                if cfg.pii == "mask":
                    fixed = [t for t, _ in masked]
            pii_counts.update(found)
            key = normal_form("\n".join(fixed))
            reason = ""
            if found and cfg.pii == "drop":
                reason = "personal data"
            elif cfg.exact_duplicates and key in seen:
                reason = "exact duplicate"
            seen.add(key)
            keep.append(reason == "")
            reasons.append(reason)
            values.append(fixed[0] if lm else _with_contents(value, fixed))
        table[column] = values
        mask = pd.Series(keep, index=table.index)
        gone = table[~mask].assign(split=name, reason=[r for r in reasons if r])
        removed.append(gone)
        ctx.out.write_table(name, table[mask])
        result.rows[name] = int(mask.sum())
        result.rows[f"{name}_removed"] = int((~mask).sum())
    all_removed = pd.concat(removed, ignore_index=True) if removed else pd.DataFrame()
    ctx.out.write_csv("removed", all_removed)
    by_reason = all_removed["reason"].value_counts().to_dict() if len(all_removed) else {}
    if by_reason:
        ctx.log("removed: " + ", ".join(f"{v} {k}" for k, v in by_reason.items()))
    result.summary.update({"removed": by_reason, "pii": dict(pii_counts), "repaired_texts": repaired})
    return result


def _with_contents(messages: str, contents: list[str]) -> str:
    turns: list[dict[str, Any]] = json.loads(messages)
    for turn, content in zip(turns, contents, strict=True):
        turn["content"] = content
    return json.dumps(turns, ensure_ascii=False)
