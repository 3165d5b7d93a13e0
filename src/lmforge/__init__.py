"""lmforge: adapt a pretrained language model to your task from one YAML file.

from lmforge import load_config, run_pipeline
result = run_pipeline(load_config("lmforge.yaml"))
result.artifacts["evaluate"].metrics["f1_macro"]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "LmforgeError",
    "ModelNotFoundError",
    "RunResult",
    "__version__",
    "load_config",
    "run_pipeline",
]

if TYPE_CHECKING:
    from lmforge.config import Config, load_config
    from lmforge.errors import ConfigError, DataError, LmforgeError, ModelNotFoundError
    from lmforge.pipeline.runner import RunResult, run_pipeline

_LAZY = {
    "Config": "lmforge.config",
    "load_config": "lmforge.config",
    "ConfigError": "lmforge.errors",
    "DataError": "lmforge.errors",
    "LmforgeError": "lmforge.errors",
    "ModelNotFoundError": "lmforge.errors",
    "RunResult": "lmforge.pipeline.runner",
    "run_pipeline": "lmforge.pipeline.runner",
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import lmforge` (and the CLI's startup) stays fast.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lmforge' has no attribute {name!r}")
