"""Model selection among candidates, and the budget rules that exclude some."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lmforge.config import load_config
from lmforge.errors import StageError
from lmforge.pipeline.runner import run_pipeline
from tests.conftest import TOPICS, build_tiny_bert


@pytest.fixture(scope="module")
def wider_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like `tiny_model` but 64 wide: more parameters, same vocabulary."""
    return build_tiny_bert(tmp_path_factory.mktemp("wider-bert"), hidden=64, seed=1)


def test_picks_a_candidate_and_explains_why(
    config_dict: dict[str, Any], tiny_model: Path, wider_model: Path
) -> None:
    config_dict["model"] = [str(tiny_model), str(wider_model)]
    config_dict["tracking"]["enabled"] = False
    result = run_pipeline(load_config(data=config_dict))
    select = result.artifacts["select"]
    rows = select.json("candidates")
    assert [r["model"] for r in rows] == [str(tiny_model), str(wider_model)]
    assert all(r["status"] == "kept" and 0 <= r["score"] <= 1 and r["latency_ms"] > 0 for r in rows)
    assert rows[0]["parameters"] < rows[1]["parameters"]
    choice = select.json("choice")
    assert choice["model"] in config_dict["model"] and choice["why"]
    assert sum(r["chosen"] for r in rows) == 1
    assert result.artifacts["train"].summary["model"] == choice["model"]
    html = (result.run_dir / "report" / "report.html").read_text()
    assert "Model selection" in html and choice["why"].split(":")[0] in html


@pytest.mark.parametrize(
    ("select", "ruled_out", "reason"),
    [
        ({"max_params": 60_000}, "wider", "parameters > select.max_params"),
        ({"time_budget_minutes": 1e-6}, "both", "select.time_budget_minutes"),
        ({"max_latency_ms": 1e-6}, "both", "select.max_latency_ms"),
    ],
)
def test_budget_rules(
    config_dict: dict[str, Any],
    tiny_model: Path,
    wider_model: Path,
    select: dict[str, Any],
    ruled_out: str,
    reason: str,
) -> None:
    config_dict["model"] = [str(tiny_model), str(wider_model)]
    config_dict["select"] = select
    config = load_config(data=config_dict)
    if ruled_out == "both":
        with pytest.raises(StageError, match=f"no candidate fits the budget.*{reason}"):
            run_pipeline(config, until="select")
        return
    rows = run_pipeline(config, until="select").artifacts["select"].json("candidates")
    assert rows[1]["status"] == "ruled out" and reason in rows[1]["reason"]
    assert rows[0]["status"] == "kept" and rows[0]["chosen"]


def test_finetune_probe(config_dict: dict[str, Any], tiny_model: Path, wider_model: Path) -> None:
    config_dict["model"] = [str(tiny_model), str(wider_model)]
    config_dict["select"] = {"probe": "finetune", "probe_steps": 5}
    rows = run_pipeline(load_config(data=config_dict), until="select").artifacts["select"].json("candidates")
    assert all(0 <= r["score"] <= 1 for r in rows)


def test_auto_lists_the_zoo_models_for_the_task() -> None:
    from lmforge.models.candidates import candidates

    config = load_config(data={"data": {"train": "x.csv"}, "model": "auto"})
    assert config.selects_model and candidates(config) == ["minilm-l6", "smollm2-135m"]
    assert len(TOPICS) == 4  # the tiny data the other tests use
