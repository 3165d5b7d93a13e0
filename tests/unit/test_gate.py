"""The gate matrix: baseline gain, absolute thresholds, the registry's champion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lmforge.config import load_config
from lmforge.pipeline.runner import run_pipeline


def _gate(result: Any) -> dict[str, Any]:
    return result.artifacts["gate"].json("decision")


def _aliases(config: dict[str, Any]) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    uri = config["tracking"]["uri"]
    model = MlflowClient(tracking_uri=uri, registry_uri=uri).get_registered_model(config["project"])
    return {alias: str(version) for alias, version in model.aliases.items()}


@pytest.mark.parametrize(
    ("gate", "passed", "failing"),
    [
        ({"min_gain": -1.0}, True, []),
        ({"min_gain": 1.0}, False, ["baseline"]),
        ({"min_gain": -1.0, "min": {"f1_macro": 0.3}}, True, []),
        ({"min_gain": -1.0, "min": {"f1_macro": 1.01, "accuracy": 0.0}}, False, ["min f1_macro"]),
        ({"enabled": False, "min_gain": 1.0}, True, []),
    ],
)
def test_baseline_and_thresholds(
    config_dict: dict[str, Any], gate: dict[str, Any], passed: bool, failing: list[str]
) -> None:
    config_dict["gate"] = gate
    config_dict["tracking"]["enabled"] = False
    result = run_pipeline(load_config(data=config_dict))
    decision = _gate(result)
    assert decision["passed"] is passed
    assert [c["name"] for c in decision["checks"] if not c["passed"]] == failing
    html = (result.run_dir / "report" / "report.html").read_text()
    if gate.get("enabled", True):
        assert "Quality gate" in html and ("passed" if passed else "The gate failed") in html


def test_champion_challenger_and_required(config_dict: dict[str, Any], tmp_path: Path) -> None:
    config_dict["gate"] = {"min_gain": -1.0}
    first = run_pipeline(load_config(data=config_dict))
    assert _gate(first)["passed"] and first.artifacts["register"].summary["alias"] == "champion"
    assert _aliases(config_dict) == {"champion": "1"}

    # A rerun of the champion compares like the first time: nothing downstream reruns.
    again = run_pipeline(load_config(data=config_dict))
    assert [s for s, cached in again.cached.items() if not cached] == ["gate"]

    # A much worse model, on a different test split (the champion is scored on it):
    # registered as challenger, champion unchanged.
    worse = {
        **config_dict,
        "train": {**config_dict["train"], "learning_rate": 1e-7},
        "split": {**config_dict["split"], "seed": 7},
    }
    second = run_pipeline(load_config(data=worse))
    decision = _gate(second)
    champion = next(c for c in decision["checks"] if c["name"] == "champion")
    assert not champion["passed"] and "vs champion version 1" in champion["detail"]
    assert second.artifacts["register"].summary["alias"] == "challenger"
    assert _aliases(config_dict) == {"champion": "1", "challenger": "2"}

    # With gate.required the CLI exits non-zero and says why.
    import yaml

    from lmforge.cli import app

    path = tmp_path / "worse.yaml"
    path.write_text(yaml.safe_dump({**worse, "gate": {"min_gain": -1.0, "required": True}}))
    outcome = CliRunner().invoke(app, ["run", str(path)])
    assert outcome.exit_code == 1, outcome.output
    assert "gate failed" in outcome.output and "champion" in outcome.output

    # A better model takes the champion alias; tolerance lets an equal one pass too.
    better = {
        **config_dict,
        "train": {**config_dict["train"], "seed": 3},
        "gate": {"min_gain": -1.0, "champion_tolerance": 1.0},
    }
    third = run_pipeline(load_config(data=better))
    assert _gate(third)["passed"] and third.artifacts["register"].summary["alias"] == "champion"
    assert _aliases(config_dict)["champion"] == third.artifacts["register"].summary["version"]


def test_a_rerun_reuses_the_champion_check_until_the_registry_changes(
    config_dict: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    import lmforge.registry

    def offline(uri: str) -> None:
        raise AssertionError("the gate asked the registry")

    config_dict["gate"] = {"min_gain": -1.0}
    run_pipeline(load_config(data=config_dict))  # registers version 1: the store changed since
    checked = _gate(run_pipeline(load_config(data=config_dict)))  # so this gate asks MLflow
    with monkeypatch.context() as patch:
        patch.setattr(lmforge.registry, "client_for", offline)
        assert _gate(run_pipeline(load_config(data=config_dict))) == checked  # nothing wrote: reused

    # Any write to the store (here a tag, as `lmforge models` or another run would) is seen.
    uri = config_dict["tracking"]["uri"]
    MlflowClient(tracking_uri=uri, registry_uri=uri).set_model_version_tag(
        config_dict["project"], "1", "k", "v"
    )
    with monkeypatch.context() as patch:
        patch.setattr(lmforge.registry, "client_for", offline)
        with pytest.raises(AssertionError, match="asked the registry"):
            run_pipeline(load_config(data=config_dict))

    # A memo that cannot be read is ignored, never trusted.
    (Path(config_dict["output_dir"]) / ".gate-champion.json").write_text("{not json")
    assert _gate(run_pipeline(load_config(data=config_dict))) == checked
