"""Standing test: personal data in the training file or in feedback leaves no raw copy.

A tiny run (ingest .. register, tracking to a local sqlite store) on a CSV with planted e-mails,
phones, card numbers and IBANs, then a prediction and feedback through the app built on the
registered model; afterwards every file the run, the MLflow store, the cache and the server's
state wrote is searched for each raw value: as bytes, and decoded (parquet, gzip, zip), since
compression hides text from a byte search. Only the user's own input file may hold them.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lmforge.config import ServeConfig, load_config
from lmforge.pipeline.runner import run_pipeline
from tests.conftest import fast_config, make_rows, write_csv

SCRIPT = '<script>alert("pwned")</script>'

# Each planted value, with the forms a careless copy could take (digits without spacing).
PLANTED = {
    "email": ["jane.doe@example.com"],
    "email of an unlabelled row": ["sam.roe@example.net"],
    "email hidden by an HTML entity": ["john&#64;example.org", "john@example.org"],
    "phone": ["+1 415-555-2671", "4155552671"],
    "card": ["4111 1111 1111 1111", "4111111111111111"],
    "iban (spaced)": ["DE89 3704 0044 0532 0130 00", "DE89370400440532013000"],
    "iban": ["GB82WEST12345698765432"],
}
TRAIN_TEXTS = [
    ("refund please, mail jane.doe@example.com about the invoice", "billing"),
    ("charge twice, write to john&#64;example.org today", "billing"),
    ("parcel late call me on +1 415-555-2671 again", "shipping"),
    ("payment failed for card 4111 1111 1111 1111 help", "billing"),
    ("refund to DE89 3704 0044 0532 0130 00 please", "billing"),
    ("price wrong, bank GB82WEST12345698765432 needs refund", "billing"),
    (f"crash on update {SCRIPT} error", "bug"),
    ("password locked, my address is sam.roe@example.net", ""),  # auto-labelled: the label stage's path
]
# A label is training data too: it reaches the model card, the report and MLflow.
SCRIPT_ROWS = [
    (f"weird {w} text {i}", SCRIPT) for i, w in enumerate(["one", "two", "three", "four", "five", "six"])
]
FEEDBACK_TEXT = "login locked, reach me at jane.doe@example.com or +1 415-555-2671"


def _texts_of(path: Path, data: bytes) -> Iterator[bytes]:
    """The file's bytes, and the text inside it when it is compressed or columnar."""
    yield data
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(io.BytesIO(data)).to_pylist()
        yield json.dumps(rows, ensure_ascii=False, default=str).encode()
    elif data[:2] == b"\x1f\x8b":
        yield gzip.decompress(data)
    elif data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in archive.namelist():
                yield from _texts_of(Path(name), archive.read(name))


def files_holding(root: Path, value: str) -> set[str]:
    """Paths (relative to `root`) of the files under it that hold `value`, decoded or not."""
    return {
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and any(value.encode() in blob for blob in _texts_of(path, path.read_bytes()))
    }


def _leaks(roots: list[Path], allowed: set[Path]) -> list[str]:
    found = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.resolve() not in allowed):
            for blob in _texts_of(path, path.read_bytes()):
                for kind, forms in PLANTED.items():
                    found += [f"{kind} {v!r} in {path}" for v in forms if v.encode() in blob]
    return sorted(set(found))


@pytest.fixture(scope="module")
def leaky_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> Iterator[tuple[Path, dict[str, Any], Any]]:
    folder = tmp_path_factory.mktemp("pii-leaks")
    rows = make_rows(per_class=10) + TRAIN_TEXTS + SCRIPT_ROWS
    data = write_csv(folder / "data.csv", rows)
    config = fast_config(folder, data, tiny_model)
    config["train"]["epochs"] = 2
    config["clean"] = {"pii": "mask"}
    with pytest.MonkeyPatch.context() as mp:
        # Anything written relative to the working directory or to the cache is searched too.
        mp.chdir(folder)
        mp.setenv("LMFORGE_CACHE", str(folder / "cache"))
        result = run_pipeline(load_config(data=config))
        yield folder, config, result


def test_no_raw_personal_data_is_left_anywhere(leaky_run: tuple[Path, dict[str, Any], Any]) -> None:
    from fastapi.testclient import TestClient

    from lmforge.serve.app import create_app

    folder, config, result = leaky_run
    alias = result.artifacts["register"].summary["alias"]  # champion or challenger: both serve
    state = folder / "state"
    state.mkdir()
    cfg = ServeConfig(state_dir=str(state), reload_seconds=0, log_inputs=True)
    with TestClient(
        create_app(f"test-project@{alias}", config["tracking"]["uri"], cfg, auth=False)
    ) as client:
        reply = client.post("/v1/classify", json={"texts": [FEEDBACK_TEXT]})
        assert reply.status_code == 200, reply.text
        prediction = reply.json()["predictions"][0]["id"]
        for body in (
            {"prediction_id": prediction, "label": "login"},
            {"text": FEEDBACK_TEXT, "label": "login"},
            {"text": FEEDBACK_TEXT, "rating": 1},
        ):
            sent = client.post("/v1/feedback", json=body)
            assert sent.status_code == 200, sent.text

    # The search must see what it searches: the sqlite files, the parquet tables, MLflow's store.
    searched = {p.name for p in folder.rglob("*") if p.is_file()}
    assert {"feedback.db", "mlruns.db", "train.parquet", "changed.csv", "MODEL_CARD.md"} <= searched
    assert _leaks([folder], allowed={(folder / "data.csv").resolve()}) == []

    from lmforge.serve.store import ServeStore

    stored = ServeStore(f"sqlite:///{state / 'feedback.db'}").feedback()
    assert [f.text for f in stored] == ["login locked, reach me at <EMAIL> or <PHONE>"] * 3


def test_masking_is_reported_where_it_happened(leaky_run: tuple[Path, dict[str, Any], Any]) -> None:
    _, _, result = leaky_run
    assert result.artifacts["ingest"].summary["pii_masked"] == {"email": 3, "phone": 1, "card": 1, "iban": 2}
    clean = result.artifacts["clean"].summary
    assert clean["pii"] == {"email": 3, "phone": 1, "card": 1, "iban": 2}
    changed = {e["changes"] for e in clean["changed_examples"]}
    assert {"pii:email", "pii:phone", "pii:card", "pii:iban"} <= {c for e in changed for c in e.split()}
    texts = result.artifacts["ingest"].table("train")["text"].tolist()
    assert "refund please, mail <EMAIL> about the invoice" in texts
    assert "charge twice, write to <EMAIL> today" in texts  # found once the entity is decoded


def test_the_model_card_and_report_show_a_script_label_as_text(
    leaky_run: tuple[Path, dict[str, Any], Any],
) -> None:
    folder, _, result = leaky_run
    card = result.artifacts["export"].path("MODEL_CARD.md").read_text()
    assert SCRIPT in result.artifacts["split"].json("labels")  # it did reach the card's inputs
    assert "<script" not in card.lower()
    assert '&lt;script&gt;alert("pwned")&lt;/script&gt;' in card
    report = result.artifacts["report"].path("report.html").read_text()
    assert "<script>alert" not in report
    mlflow_cards = [p for p in folder.rglob("MODEL_CARD.md") if p.is_file()]
    assert mlflow_cards and all("<script" not in p.read_text().lower() for p in mlflow_cards)
