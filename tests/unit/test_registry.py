"""The registry lifecycle on real MLflow sqlite stores: refs, promote/rollback, archive,
export/import between two stores, and the `lmforge models` commands."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from lmforge.cli_models import models_app
from lmforge.registry import (
    ModelRef,
    RegistryError,
    archive,
    client_for,
    download,
    export_version,
    import_version,
    list_models,
    list_versions,
    parse_ref,
    promote,
    resolve,
    rollback,
)
from lmforge.registry.names import ARCHIVED_TAG, GATE_TAG, HASH_TAG, HISTORY_TAG, IMPORTED_TAG


@dataclass
class Store:
    root: Path
    uri: str
    client: Any


@pytest.fixture(scope="session")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated, empty MLflow database; each store copies it (migrations take seconds)."""
    path = tmp_path_factory.mktemp("template") / "mlruns.db"
    client_for(f"sqlite:///{path.as_posix()}").search_experiments()
    return path


def _store(root: Path, empty_db: Path) -> Store:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(empty_db, root / "mlruns.db")
    uri = f"sqlite:///{(root / 'mlruns.db').as_posix()}"
    return Store(root, uri, client_for(uri))


def _add_version(store: Store, name: str, seed: int, tags: dict[str, str], *, export: bool = False) -> str:
    """A registered version like `register` makes: a run with `model/` (and `export/`) logged."""
    import torch
    from safetensors.torch import save_file

    client = store.client
    experiment = client.get_experiment_by_name(name)
    exp_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(name, artifact_location=(store.root / "mlartifacts").as_uri())
    )
    run = client.create_run(exp_id)
    folder = store.root / f"src-{seed}"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "seed": seed}))
    save_file({"w": torch.arange(8, dtype=torch.float32) + seed}, str(folder / "model" / "model.safetensors"))
    client.log_artifacts(run.info.run_id, str(folder / "model"), "model")
    if export:
        (folder / "export").mkdir()
        (folder / "export" / "serving.json").write_text(json.dumps({"task": "classification"}))
        client.log_artifacts(run.info.run_id, str(folder / "export"), "export")
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name, description="lmforge project spam")
    version = client.create_model_version(
        name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags=tags
    )
    client.set_terminated(run.info.run_id)
    return str(version.version)


@pytest.fixture
def store(tmp_path: Path, empty_db: Path) -> Store:
    """spam: v1 champion, v2 challenger (with exports), v3 without alias."""
    s = _store(tmp_path / "a", empty_db)
    base = {"task": "classification", HASH_TAG: "h"}
    _add_version(s, "spam", 1, {**base, "test_accuracy": "0.8000", GATE_TAG: "passed"})
    _add_version(s, "spam", 2, {**base, "test_accuracy": "0.7500", GATE_TAG: "too low"}, export=True)
    _add_version(s, "spam", 3, {**base, "test_accuracy": "0.9000"})
    s.client.set_registered_model_alias("spam", "champion", "1")
    s.client.set_registered_model_alias("spam", "challenger", "2")
    return s


def _aliases(store: Store, name: str = "spam") -> dict[str, str]:
    return {a: str(v) for a, v in store.client.get_registered_model(name).aliases.items()}


def _hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "version.json"
    }


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("spam", ModelRef("spam", alias="champion")),
        ("spam@champion", ModelRef("spam", alias="champion")),
        ("spam@challenger", ModelRef("spam", alias="challenger")),
        ("spam@my-alias_2", ModelRef("spam", alias="my-alias_2")),
        ("spam@3", ModelRef("spam", version="3")),
        ("spam@v12", ModelRef("spam", version="12")),
        ("spam/3", ModelRef("spam", version="3")),
        (" spam ham@2 ", ModelRef("spam ham", version="2")),
    ],
)
def test_parse_ref(ref: str, expected: ModelRef) -> None:
    assert parse_ref(ref) == expected


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "@champion",
        "spam@",
        "spam/",
        "spam/champion",
        "spam/v3",
        "a/b/3",
        "spam@a@b",
        "sp:am@1",
        "spam@bad alias",
        "spam@1.5",
    ],
)
def test_parse_ref_rejects(ref: str) -> None:
    with pytest.raises(RegistryError, match="bad model reference") as info:
        parse_ref(ref)
    assert f"'{ref}'" in str(info.value) and "NAME@VERSION" in str(info.value)


def test_list_and_show(store: Store) -> None:
    assert list_models(store.client) == [
        {
            "name": "spam",
            "latest": "3",
            "aliases": {"champion": "1", "challenger": "2"},
            "champion": "1",
            "description": "lmforge project spam",
        }
    ]
    versions = list_versions(store.uri, "spam")  # a URI works as well as a client
    assert [v.version for v in versions] == ["3", "2", "1"]
    assert [v.aliases for v in versions] == [(), ("challenger",), ("champion",)]
    assert versions[0].metrics == {"accuracy": 0.9} and versions[1].gate == "too low"
    assert all(v.state == "active" and v.run_id and v.source.endswith("/model") for v in versions)
    assert resolve(store.client, "spam").version == "1"
    assert resolve(store.client, "spam@challenger").version == "2"


@pytest.mark.parametrize(
    ("ref", "fragments"),
    [
        ("eggs", ["no registered model 'eggs'", "registered: spam"]),
        ("spam@staging", ["no alias 'staging'", "champion (version 1)", "challenger (version 2)"]),
        ("spam@7", ["spam has no version 7", "versions: 1, 2, 3"]),
    ],
)
def test_resolve_unknown(store: Store, ref: str, fragments: list[str]) -> None:
    with pytest.raises(RegistryError) as info:
        resolve(store.client, ref)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_download_layout(store: Store, tmp_path: Path) -> None:
    folder = download(store.client, "spam@challenger", tmp_path / "dl")
    assert sorted(_hashes(folder)) == ["export/serving.json", "model/config.json", "model/model.safetensors"]
    record = json.loads((folder / "version.json").read_text())
    assert (
        record["name"] == "spam" and record["version"] == "2" and record["tags"]["task"] == "classification"
    )
    assert not (download(store.client, "spam@1", tmp_path / "dl1") / "export").exists()


def test_promote_then_rollback(store: Store) -> None:
    trail: list[tuple[str, str]] = []
    record = lambda action, target: trail.append((action, target))  # noqa: E731
    info = promote(store.client, "spam@challenger", audit=record)
    assert info.aliases == ("champion",) and _aliases(store) == {"champion": "2"}  # challenger won
    promote(store.client, "spam@3", audit=record)
    assert _aliases(store) == {"champion": "3"}
    history = store.client.get_registered_model("spam").tags[HISTORY_TAG]
    assert json.loads(history) == ["1", "2"]
    assert rollback(store.client, "spam", audit=record).version == "2"
    assert rollback(store.client, "spam", audit=record).version == "1"
    assert trail == [
        ("promote", "spam@2"),
        ("promote", "spam@3"),
        ("rollback", "spam@2"),
        ("rollback", "spam@1"),
    ]
    with pytest.raises(RegistryError, match="spam has no previous champion to roll back to"):
        rollback(store.client, "spam")


def test_rollback_without_previous(store: Store) -> None:
    with pytest.raises(RegistryError, match="no previous champion") as info:
        rollback(store.client, "spam")
    assert "lmforge models promote spam@VERSION" in str(info.value)


def test_archive(store: Store) -> None:
    with pytest.raises(RegistryError, match="promote another version first"):
        archive(store.client, "spam@champion")
    trail: list[tuple[str, str]] = []
    info = archive(store.client, "spam@challenger", audit=lambda a, t: trail.append((a, t)))
    assert (
        info.archived and info.state == "archived" and info.aliases == () and trail == [("archive", "spam@2")]
    )
    assert _aliases(store) == {"champion": "1"}
    assert store.client.get_model_version("spam", "2").tags[ARCHIVED_TAG] == "true"
    with pytest.raises(RegistryError, match=r"spam@2 is archived and cannot be promoted"):
        promote(store.client, "spam@2")


def test_rollback_skips_archived(store: Store) -> None:
    promote(store.client, "spam@2")
    promote(store.client, "spam@3")
    archive(store.client, "spam@2")
    assert rollback(store.client, "spam").version == "1"


def test_export_import_round_trip(store: Store, tmp_path: Path, empty_db: Path) -> None:
    tarball = export_version(store.client, "spam@2", tmp_path / "out" / "spam-v2.tar.gz")
    assert [p.name for p in tarball.parent.iterdir()] == ["spam-v2.tar.gz"]  # no temp left
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert {"spam-v2/MANIFEST.json", "spam-v2/SHA256SUMS", "spam-v2/model/model.safetensors"} <= set(names)

    other = _store(tmp_path / "b", empty_db)
    info = import_version(other.uri, tarball)
    assert (info.name, info.version, info.aliases) == ("spam", "1", ())
    assert info.tags[IMPORTED_TAG] == "spam-v2.tar.gz" and info.gate == "too low"
    assert info.source.startswith((tmp_path / "b" / "mlartifacts").as_uri())
    original = download(store.client, "spam@2", tmp_path / "orig")
    copied = download(other.client, "spam@1", tmp_path / "copy")
    assert _hashes(copied) == _hashes(original) and "export/serving.json" in _hashes(copied)
    renamed = import_version(other.client, tarball, name="ham")
    assert (renamed.name, renamed.version) == ("ham", "1")


def _rewrite(src: Path, dest: Path, change: Any) -> None:
    """Copy a tarball, passing every member's bytes through `change(name, data)`."""
    with tarfile.open(src) as tar_in, tarfile.open(dest, "w:gz") as tar_out:
        for member in tar_in.getmembers():
            data = tar_in.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if data is not None:
                data = change(member.name, data)
                member.size = len(data)
            tar_out.addfile(member, io.BytesIO(data) if data is not None else None)


def test_tampered_tarball_refused(store: Store, tmp_path: Path, empty_db: Path) -> None:
    tarball = export_version(store.client, "spam@1", tmp_path / "spam-v1.tar.gz")
    tampered = tmp_path / "tampered.tar.gz"

    def flip(name: str, data: bytes) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 1]) if name.endswith("model.safetensors") else data

    _rewrite(tarball, tampered, flip)
    other = _store(tmp_path / "b", empty_db)
    with pytest.raises(RegistryError, match=r"checksum mismatch for model/model\.safetensors"):
        import_version(other.client, tampered)
    assert list_models(other.client) == []
    assert [e.name for e in other.client.search_experiments()] == ["Default"]  # no run either


def test_traversal_member_refused(tmp_path: Path, empty_db: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        member = tarfile.TarInfo("../escaped.txt")
        member.size = 3
        tar.addfile(member, io.BytesIO(b"bad"))
    other = _store(tmp_path / "b", empty_db)
    with pytest.raises(RegistryError, match=r"refused member '\.\./escaped\.txt'"):
        import_version(other.client, evil)
    assert not list(tmp_path.rglob("escaped.txt")) and list_models(other.client) == []


def test_cli_round_trip(
    store: Store, tmp_path: Path, empty_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # lifecycle actions are audited in ./lmforge-state/keys.db
    app = typer.Typer()
    app.add_typer(models_app, name="models")
    runner = CliRunner()

    def cli(*args: str, uri: str = store.uri) -> tuple[int, str]:
        result = runner.invoke(app, ["models", *args, "--tracking-uri", uri], terminal_width=200)
        return result.exit_code, result.output

    code, out = cli("list")
    assert code == 0 and "spam" in out and "champion=1" in out
    code, out = cli("show", "spam")
    assert code == 0 and "challenger" in out and "accuracy 0.7500" in out and "too low" in out
    code, out = cli("show", "spam@3")
    assert code == 0 and f"tag {HASH_TAG}" in out
    code, out = cli("promote", "spam@3")
    assert code == 0 and "spam version 3 is the champion" in out
    code, out = cli("archive", "spam@champion")
    assert code == 1 and "registry error" in out and "promote another version first" in out
    code, out = cli("rollback", "spam")
    assert code == 0 and "spam version 1 is the champion again" in out
    from lmforge.serve.keys import KeyStore

    trail = [(e["action"], e["target"]) for e in KeyStore(tmp_path / "lmforge-state" / "keys.db").audit_log()]
    assert trail[:2] == [("rollback", "spam@1"), ("promote", "spam@3")]
    code, out = cli("show", "spam@nope!")
    assert code == 1 and "bad model reference 'spam@nope!'" in out and "Traceback" not in out
    tarball = tmp_path / "spam-v3.tar.gz"
    code, out = cli("export", "spam@3", "--out", str(tarball))
    assert code == 0 and tarball.is_file() and "exported spam@3" in out
    code, out = cli("export", "spam")
    assert code == 0 and (tmp_path / "spam-v1.tar.gz").is_file()
    other = _store(tmp_path / "b", empty_db)
    code, out = cli("import", str(tarball), "--name", "ham", uri=other.uri)
    assert code == 0 and "as ham version 1" in out and "no alias" in out
    code, out = cli("show", "ham", uri=other.uri)
    assert code == 0 and "accuracy 0.9000" in out
    missing = tmp_path / "nowhere" / "mlruns.db"
    code, out = cli("list", uri=f"sqlite:///{missing.as_posix()}")
    assert code == 1 and "no MLflow database" in out and not missing.exists()


def test_auto_promotions_can_be_rolled_back(tmp_path: Path, tiny_model: Path) -> None:
    """B1: the register stage promotes through `lifecycle.promote`, so after `lmforge run`
    auto-promotes a second model, `rollback` gives the champion back to the first."""
    from lmforge.config import load_config
    from lmforge.pipeline.runner import run_pipeline
    from tests.conftest import fast_config, make_rows, write_csv

    data = write_csv(tmp_path / "data.csv", make_rows())
    config = fast_config(tmp_path, data, tiny_model)
    config["train"]["epochs"] = 2  # any model will do: the gate below passes every one
    config["gate"] = {"min_gain": -1.0, "champion_tolerance": 1.0}
    uri = config["tracking"]["uri"]

    first = run_pipeline(load_config(data=config)).artifacts["register"].summary
    assert (first["version"], first["alias"]) == ("1", "champion")
    write_csv(data, make_rows(seed=1))  # changed data: a new model, registered as version 2
    second = run_pipeline(load_config(data=config)).artifacts["register"].summary
    assert (second["version"], second["alias"]) == ("2", "champion")
    assert resolve(uri, "test-project").version == "2"

    info = rollback(uri, "test-project")
    assert info.version == "1" and info.aliases == ("champion",)
    assert resolve(uri, "test-project@champion").version == "1"
