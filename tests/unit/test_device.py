"""The inference device: the GPU when torch sees one, else the CPU; LMFORGE_DEVICE overrides."""

from __future__ import annotations

import pytest
import torch

from lmforge.models.device import DeviceError, inference_device, place


@pytest.mark.parametrize("value", ["", "auto", "AUTO", " cpu "])
def test_auto_and_cpu_follow_what_torch_sees(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LMFORGE_DEVICE", value)
    expected = "cuda" if torch.cuda.is_available() and value.strip().lower() != "cpu" else "cpu"
    assert inference_device() == expected


@pytest.mark.parametrize("value", ["gpu", "cuda:x", "cuda:", "mps;rm -rf /", "cpu cpu"])
def test_a_value_that_is_no_device_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LMFORGE_DEVICE", value)
    with pytest.raises(DeviceError, match="LMFORGE_DEVICE"):
        inference_device()


def test_a_gpu_the_machine_lacks_is_refused_with_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMFORGE_DEVICE", f"cuda:{torch.cuda.device_count()}")
    with pytest.raises(DeviceError, match=r"torch sees \d+ GPU"):
        inference_device()


def test_place_keeps_a_model_on_the_cpu_when_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMFORGE_DEVICE", "cpu")
    layer = torch.nn.Linear(2, 2)
    assert place(layer) is layer and layer.weight.device.type == "cpu"


@pytest.mark.parametrize(
    ("parameters", "gpu_has_bf16", "expected"),
    [
        (22_700_000, True, False),  # minilm-l6: 4x slower per step in bf16 on an H200
        (822_000_000, True, True),  # a 0.8B causal LM: 1.7x faster in bf16
        (None, True, True),  # size unknown: the GPU's own choice
        (822_000_000, False, False),  # no bf16 on this GPU
    ],
)
def test_auto_precision_goes_by_model_size_on_a_gpu(
    parameters: int | None, gpu_has_bf16: bool, expected: bool
) -> None:
    from lmforge.training.fit import auto_bf16

    assert auto_bf16(parameters, gpu_has_bf16) is expected
