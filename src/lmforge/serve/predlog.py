"""The prediction log: every scored text, written in batches off the request path.

A commit per request would cap throughput at the disk's fsync rate; rows are buffered and
flushed every 0.25 s (and before any feedback is stored, so feedback always finds the
prediction it refers to). Texts are stored only with `serve.log_inputs`, PII-masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("lmforge.serve")
FLUSH_SECONDS = 0.25


class PredictionLog:
    def __init__(self, store: Any, *, log_inputs: bool) -> None:
        self.store = store
        self.log_inputs = log_inputs
        self._rows: list[Any] = []
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._masker: Any = None
        if log_inputs:
            from lmforge.data.pii import PiiDetector

            self._masker = PiiDetector()

    def add(
        self,
        loaded: Any,
        texts: Sequence[str],
        results: Sequence[Any],
        ids: Sequence[str],
        latency_ms: float,
        *,
        route: str,
    ) -> None:
        from lmforge.serve.store import PredictionRow

        now = time.time()
        rows = [
            PredictionRow(
                id=pid,
                ts=now,
                model_name=loaded.name,
                model_version=loaded.version,
                route=route,
                text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                text_length=len(text),
                text=self._masker.mask(text)[0] if self._masker else None,
                label=getattr(result, "label", None),
                confidence=getattr(result, "confidence", None),
                probabilities=getattr(result, "probabilities", None),
                # Answers can echo personal data from the prompt: kept under the same rule as texts.
                output=self._masker.mask(result)[0] if self._masker and isinstance(result, str) else None,
                latency_ms=latency_ms,
            )
            for pid, text, result in zip(ids, texts, results, strict=True)
        ]
        with self._lock:
            self._rows.extend(rows)

    def flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
        if rows:
            try:
                self.store.log_predictions(rows)
            except Exception:
                with self._lock:  # keep them for the next try rather than lose them
                    self._rows[:0] = rows
                raise

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self.flush)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await asyncio.to_thread(self.flush)
            except Exception as exc:
                log.warning("prediction log write failed (will retry): %s", exc)
