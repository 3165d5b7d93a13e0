"""Where in-process inference runs: the GPU when one is visible, else the CPU.

Training places itself (the Trainer picks CUDA when it sees it); evaluation, `predict`,
embeddings, generation and `serve --runtime torch` load their models through `place`, so a
GPU machine scores on its GPU without a setting. `LMFORGE_DEVICE` overrides the choice
(`cpu`, `cuda`, `cuda:1`, `auto`), e.g. to keep a server off a GPU that training uses.
ONNX export and the ONNX runtime stay on the CPU.
"""

from __future__ import annotations

import os
import re
from typing import Any

from lmforge.errors import LmforgeError

ENV = "LMFORGE_DEVICE"
_VALID = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class DeviceError(LmforgeError):
    """LMFORGE_DEVICE names a device this machine does not have, or no device at all."""

    headline = "device error"


def inference_device() -> str:
    """`cuda` when torch sees a GPU, else `cpu`; `LMFORGE_DEVICE` overrides."""
    import torch

    wanted = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if not _VALID.match(wanted):
        raise DeviceError(f"{ENV}={wanted!r} is not a device", hint="use auto, cpu, cuda or cuda:N")
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda"):
        index = int(wanted.split(":")[1]) if ":" in wanted else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise DeviceError(
                f"{ENV}={wanted} but torch sees {torch.cuda.device_count()} GPU(s)",
                hint=f"unset {ENV} or set it to cpu",
            )
    return wanted


def place(model: Any) -> Any:
    """`model` moved to the inference device (a no-op on the CPU)."""
    device = inference_device()
    return model if device == "cpu" else model.to(device)
