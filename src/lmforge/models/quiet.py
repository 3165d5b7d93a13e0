"""Silence library chatter (weight-loading reports, download bars) that lmforge replaces."""

from __future__ import annotations

import os
import warnings


def quiet_transformers() -> None:
    """Call before loading models: lmforge reports loading and progress itself."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*TensorBoard.*")
    # peft still asks for the transformers-4 name; nothing for the user to change.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
