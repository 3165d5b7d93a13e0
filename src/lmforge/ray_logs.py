"""Ray Data's console lines while lmforge drives it.

Ray Data prints two INFO lines to the console for every dataset it executes ("Starting
execution of Dataset ...", "Execution plan ...") and one when it finishes. A clean stage maps a
dozen datasets, so these lines bury lmforge's own progress bars and summaries. They still go
to Ray Data's log file (`<Ray session>/logs/ray-data/`), where Ray users look for them; only
the console copy is raised to WARNING, and only while lmforge's work runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

RAY_DATA_LOGGER = "ray.data"


@contextmanager
def ray_data_console_warnings_only() -> Iterator[None]:
    """Inside the block, Ray Data's console handlers pass warnings and errors only; the file
    handler keeps every level. The handlers' levels are put back after."""
    import ray.data  # noqa: F401  (its import sets the handlers up; `ray.data` loads lazily)

    logger = logging.getLogger(RAY_DATA_LOGGER)
    console = [
        handler
        for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
    ]
    levels = [handler.level for handler in console]
    for handler in console:
        handler.setLevel(max(handler.level, logging.WARNING))
    try:
        yield
    finally:
        for handler, level in zip(console, levels, strict=True):
            handler.setLevel(level)
