"""Score a data file with a loaded serving predictor, chunk by chunk, into a table.

A row whose text is empty, only whitespace, not text (a JSON number, a list) or missing is
not scored: it stays in the output, at its place, with a null label and the reason in the
`error` column, and is counted in the result. A file where every row is bad is an error and
leaves no output.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.errors import DataError
from lmforge.predict.reader import MISSING, Chunk, count_rows, open_source
from lmforge.predict.writer import TableWriter, check_output

# Row numbers of bad rows kept for the report (the count is always exact).
SHOWN_BAD = 10

Progress = Callable[[int, int | None], None]
Scorer = Callable[[list[Any]], dict[str, list[Any]]]


@dataclass
class PredictResult:
    output: Path
    rows: int
    scored: int
    bad: int
    bad_rows: list[tuple[int, str]] = field(default_factory=list)  # (row number, reason), the first few
    seconds: float = 0.0

    def bad_line(self, source: Path) -> str:
        """One line naming the count and the first bad rows, or '' when none."""
        if not self.bad:
            return ""
        shown = ", ".join(f"{row} ({why})" for row, why in self.bad_rows)
        more = f" and {self.bad - len(self.bad_rows)} more" if self.bad > len(self.bad_rows) else ""
        rows = "row" if self.bad == 1 else "rows"
        return (
            f"{source}: {self.bad:,} {rows} not scored (null label, reason in 'error'): {rows} {shown}{more}"
        )


def bad_reason(text: Any) -> str | None:
    """Why `text` cannot be scored, or None when it can."""
    if isinstance(text, str):
        return None if text.strip() else "empty text"
    if text is None or (isinstance(text, float) and text != text):  # None, or NaN (a blank CSV line)
        return "empty text"
    if text is MISSING:
        return "no such field"
    return f"not text: {type(text).__name__}"


def predict_file(
    predictor: Any,
    source: Path,
    output: Path,
    *,
    column: str = "text",
    id_column: str | None = None,
    chunk_rows: int = 1024,
    batch_size: int = 32,
    force: bool = False,
    max_new_tokens: int = 64,
    progress: Progress | None = None,
) -> PredictResult:
    """Write one output row per input row; see the module doc for bad rows."""
    if chunk_rows < 1 or batch_size < 1:
        raise DataError("--chunk-rows and --batch-size must be at least 1")
    fmt = check_output(output, force=force, inputs=source)
    opened = open_source(source, column, id_column=id_column, chunk_rows=chunk_rows)
    total = count_rows(source, opened.format)
    score = scorer(predictor, batch_size, max_new_tokens)
    tables = ((chunk.rows, chunk_table(chunk, opened.id_column, score)) for chunk in opened.chunks)
    return write_tables(tables, output, fmt, source, column, total=total, progress=progress)


def write_tables(
    tables: Iterable[tuple[list[int], Any]],
    output: Path,
    fmt: str,
    source: Path,
    column: str,
    *,
    total: int | None,
    progress: Progress | None,
) -> PredictResult:
    """Write scored tables (each with the file row numbers of its rows) to one output file,
    counting the bad rows and moving the progress bar; this process's and Ray's path alike."""
    result = PredictResult(output, 0, 0, 0)
    started = time.perf_counter()
    with TableWriter(output, fmt) as writer:
        for rows, table in tables:
            count(result, rows, table.column("error").to_pylist())
            writer.write(table)
            if progress is not None:
                progress(result.rows, total)
        finish(result, source, column)
    result.seconds = time.perf_counter() - started
    return result


def chunk_table(chunk: Chunk, id_column: str | None, score: Scorer) -> Any:
    """The output rows of one chunk: row id, the scorer's columns (null on bad rows), `error`."""
    import pyarrow as pa

    errors: list[str | None] = [bad_reason(t) for t in chunk.texts]
    good = [i for i, e in enumerate(errors) if e is None]
    scored = score([chunk.texts[i] for i in good])
    columns: dict[str, Any] = {
        id_column or "row": pa.array(chunk.ids, pa.string() if id_column else pa.int64())
    }
    for name, values in scored.items():
        full: list[Any] = [None] * len(chunk.texts)
        for i, value in zip(good, values, strict=True):
            full[i] = value
        columns[name] = pa.array(full, pa.string() if name in ("label", "generated") else pa.float64())
    columns["error"] = pa.array(errors, pa.string())
    return pa.table(columns)


def count(result: PredictResult, rows: list[int], errors: list[str | None]) -> None:
    """Add one chunk's rows to the result (bad ones by row number, the first few kept)."""
    for row, error in zip(rows, errors, strict=True):
        if error is not None:
            result.bad += 1
            if len(result.bad_rows) < SHOWN_BAD:
                result.bad_rows.append((row, error))
    result.rows += len(rows)
    result.scored += sum(e is None for e in errors)


def finish(result: PredictResult, source: Path, column: str) -> None:
    """Refuse (before the output is renamed into place) a file with nothing scored."""
    if result.rows == 0:
        raise DataError("the file has a header but no rows", file=source)
    if result.scored == 0:
        raise DataError(
            f"none of its {result.rows:,} rows has text to score in column '{column}'",
            file=source,
            row=result.bad_rows[0][0],
            hint="choose the text column with --column",
        )


def scorer(predictor: Any, batch_size: int, max_new_tokens: int) -> Scorer:
    """texts -> output columns. Classification: label, probability, prob_<label> per class;
    generation: the greedy answer to the text as the user's message (what the chat route renders)."""
    if getattr(predictor, "task", "") == "generation":

        def generate(texts: list[str]) -> dict[str, list[Any]]:
            answers = [
                "".join(
                    predictor.stream(
                        predictor.chat_prompt([{"role": "user", "content": text}]),
                        max_new_tokens=max_new_tokens,
                        temperature=0.0,
                        top_p=1.0,
                    )
                )
                for text in texts
            ]
            return {"generated": answers}

        return generate

    labels = list(predictor.labels)

    def classify(texts: list[str]) -> dict[str, list[Any]]:
        # Similar lengths batched together: less padding, same answers (the attention mask).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        answers: list[Any] = [None] * len(texts)
        for start in range(0, len(order), batch_size):
            part = order[start : start + batch_size]
            for i, answer in zip(part, predictor.classify([texts[i] for i in part]), strict=True):
                answers[i] = answer
        out: dict[str, list[Any]] = {
            "label": [a.label for a in answers],
            "probability": [a.confidence for a in answers],
        }
        for label in labels:
            out[f"prob_{label}"] = [a.probabilities[label] for a in answers]
        return out

    return classify
