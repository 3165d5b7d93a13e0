"""Errors users see.

A `LmforgeError` is a *user* error: the CLI prints its one-line message (where, what,
the fix) without a traceback. Anything else is an internal error and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class LmforgeError(Exception):
    """Base of every error caused by the user's input (config, data, models)."""

    headline = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigError(LmforgeError):
    """One or more problems in the YAML config; each line names its key path."""

    headline = "config error"

    def __init__(self, problems: list[str], *, source: str | Path | None = None) -> None:
        self.problems = problems
        self.source = str(source) if source else None
        where = f"{self.source}: " if self.source else ""
        if len(problems) == 1:
            message = f"{where}{problems[0]}"
        else:
            lines = "\n".join(f"  {p}" for p in problems)
            message = f"{where}{len(problems)} problems\n{lines}"
        super().__init__(message)


class DataError(LmforgeError):
    """A problem in a data file, located by file, 1-based row and column."""

    headline = "data error"

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = str(file) if file else None
        self.row = row
        self.column = column
        where = []
        if self.file:
            where.append(self.file)
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message, hint=hint)


class ModelNotFoundError(LmforgeError):
    """A model reference that is neither a zoo name, a local path nor a reachable hub id."""

    headline = "model not found"


class ExportCheckFailed(LmforgeError):
    """An exported file (ONNX, GGUF) disagrees with the trained model beyond the set limit."""

    headline = "export check failed"


class StageError(LmforgeError):
    """A stage failed for a reason the user can act on."""

    headline = "stage failed"

    def __init__(self, stage: str, message: str, *, hint: str | None = None) -> None:
        self.stage = stage
        super().__init__(f"{stage}: {message}", hint=hint)
