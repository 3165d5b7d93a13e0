"""The UI's playground and review queue on a tiny finished run: predictions are logged,
feedback is stored under the key's name, review answers land in the answers file that the
next run reads, and each action needs its scope."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lmforge.data import review
from lmforge.serve.store import ServeStore
from lmforge.ui import views_playground
from lmforge.ui.app import create_ui_app, project_for
from tests.conftest import build_tiny_llama
from tests.ui_support import UNLABELED, logged_in, ui_project

NAME = "test-project"
LABELS = ["billing", "bug", "login", "shipping"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Any]:
    project = ui_project(tmp_path_factory.mktemp("ui-play"), tiny_model, seeds=(42,), review_queue=True)
    return {
        **project,
        "app": create_ui_app(project_for(project["path"])),
        "queue": project["runs"][0].run_dir / "label" / review.QUEUE_FILE,
        "answers": Path(project["config"]["label"]["reviewed"]),
    }


def _client(project: dict[str, Any], who: str) -> TestClient:
    return logged_in(project["app"], project["keys"][who])


def _store(project: dict[str, Any]) -> ServeStore:
    return ServeStore(f"sqlite:///{project['folder'] / 'state' / 'feedback.db'}")


def test_playground_page_offers_the_registered_versions(project: dict[str, Any]) -> None:
    page = _client(project, "predict").get("/playground")
    assert page.status_code == 200
    assert 'value="1"' in page.text and "champion" in page.text and "Classify" in page.text
    assert "/static/playground.js" in page.text
    assert "sending feedback needs" in page.text  # a predict key gets no feedback buttons
    assert 'id="up"' in _client(project, "feedback").get("/playground").text
    assert _client(project, "predict").get("/static/playground.js").status_code == 200
    assert TestClient(project["app"]).get("/playground", follow_redirects=False).status_code == 303


def test_classify_returns_every_probability_and_logs_the_prediction(project: dict[str, Any]) -> None:
    client = _client(project, "predict")
    reply = client.post("/playground/classify", json={"version": "1", "text": "refund my invoice please"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    probabilities = body["probabilities"]
    assert sorted(probabilities) == LABELS and sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert body["label"] == max(probabilities, key=probabilities.__getitem__)
    assert body["confidence"] == pytest.approx(probabilities[body["label"]])
    assert list(probabilities.values()) == sorted(probabilities.values(), reverse=True)  # bar order
    logged = _store(project).get_prediction(body["id"])
    assert logged is not None and logged.route == "/playground/classify"
    assert (logged.model_name, logged.model_version, logged.label) == (NAME, "1", body["label"])
    assert (project["folder"] / "state" / "models" / f"{NAME}-v1" / "model").is_dir()

    assert client.post("/playground/classify", json={"version": "9", "text": "x"}).status_code == 404
    assert client.post("/playground/classify", json={"version": "1", "text": ""}).status_code == 422
    generate = client.post("/playground/generate", json={"version": "1", "text": "hi"})
    assert generate.status_code == 422 and "classifier" in generate.text


def test_feedback_is_stored_pending_with_the_key_name(project: dict[str, Any]) -> None:
    client = _client(project, "feedback")
    text = "my parcel never arrived"
    pid = client.post("/playground/classify", json={"version": "1", "text": text}).json()["id"]
    for body in ({"rating": -1}, {"label": "shipping"}):
        sent = client.post("/playground/feedback", json={"prediction_id": pid, "text": text, **body})
        assert sent.status_code == 200, sent.text
        assert sent.json()["status"] == "pending" and "saved" in sent.json()["message"]
    mine = [f for f in _store(project).feedback() if f.prediction_id == pid]
    assert [(f.kind, f.rating, f.label) for f in mine] == [("rating", -1, None), ("label", None, "shipping")]
    assert {(f.key_name, f.text, f.status) for f in mine} == {("feedback-user", text, "pending")}

    unknown = client.post("/playground/feedback", json={"prediction_id": pid, "text": text, "label": "nope"})
    assert unknown.status_code == 422 and "unknown label" in unknown.text
    both = client.post(
        "/playground/feedback", json={"prediction_id": pid, "text": text, "rating": 1, "label": "bug"}
    )
    assert both.status_code == 422


def test_a_predict_key_may_not_send_feedback_or_answer_reviews(project: dict[str, Any]) -> None:
    feedback = {"prediction_id": "abc", "text": "t", "rating": 1}
    item = review.read_queue(project["queue"]).iloc[0]["item_id"]
    answer = {"item_id": item, "action": "skip"}
    predict = _client(project, "predict")
    assert predict.post("/playground/feedback", json=feedback).status_code == 403
    assert predict.post("/review/answer", data=answer, follow_redirects=False).status_code == 403
    assert _client(project, "feedback").post("/review/answer", data=answer).status_code == 403
    assert (
        not project["answers"].exists()
        or item not in review.read_answers(project["answers"])["item_id"].tolist()
    )


def test_generation_streams_text_and_logs_it(project: dict[str, Any], tmp_path: Path) -> None:
    from lmforge.serve.predictor import GenerationPredictor
    from lmforge.serve.state import Loaded

    build_tiny_llama(tmp_path / "gen" / "model")
    play = views_playground.playground(SimpleNamespace(app=project["app"]))  # type: ignore[arg-type]
    play.loaded[(NAME, "77")] = Loaded(NAME, "77", GenerationPredictor(tmp_path / "gen"))
    client = _client(project, "feedback")
    body = {"version": "77", "text": "opposite of hot", "max_new_tokens": 4, "temperature": 0}
    with client.stream("POST", "/playground/generate", json=body) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
        pid = reply.headers["x-prediction-id"]
        text = "".join(reply.iter_text())
    logged = _store(project).get_prediction(pid)
    assert logged is not None and logged.route == "/playground/generate" and logged.model_version == "77"
    sent = client.post(
        "/playground/feedback", json={"prediction_id": pid, "text": body["text"], "corrected_output": "cold"}
    )
    assert sent.status_code == 200, sent.text
    fixed = [f for f in _store(project).feedback(kind="correction") if f.prediction_id == pid]
    assert [(f.corrected_output, f.key_name) for f in fixed] == [("cold", "feedback-user")]
    assert isinstance(text, str)
    too_long = client.post("/playground/generate", json={**body, "max_new_tokens": 10_000})
    assert too_long.status_code == 422


def test_review_shows_the_queue_read_only_without_admin(project: dict[str, Any]) -> None:
    page = _client(project, "predict").get("/review")
    assert page.status_code == 200 and review.LOW_CONFIDENCE in page.text
    assert "answering needs an admin key" in page.text and 'data-key="a"' not in page.text


def _shown(client: TestClient) -> tuple[str | None, str]:
    """The item id on the review page and the page."""
    page = client.get("/review").text
    marker = 'data-item="'
    if marker not in page:
        return None, page
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)], page


def test_admin_answers_the_queue_and_the_next_run_can_read_it(project: dict[str, Any]) -> None:
    client = _client(project, "admin")
    queue = review.read_queue(project["queue"]).set_index("item_id")
    assert sorted(queue["text"]) == sorted(UNLABELED)

    first, page = _shown(client)
    assert first is not None and f"{len(queue)} left" in page and queue.at[first, "text"] in page
    assert 'data-key="a"' in page and 'data-key="s"' in page and "/static/review.js" in page
    done = client.post("/review/answer", data={"item_id": first, "action": "accept"})
    assert (
        f"accepted &#39;{queue.at[first, 'suggested']}&#39;" in done.text
        and f"{len(queue) - 1} left" in done.text
    )

    second, _ = _shown(client)
    assert second not in (None, first)
    wrong = next(label for label in LABELS if label != queue.at[second, "suggested"])
    client.post("/review/answer", data={"item_id": second, "action": "correct", "label": wrong})

    third, page = _shown(client)
    assert third not in (None, first, second) and "1 left" in page
    skipped = client.post("/review/answer", data={"item_id": third, "action": "skip"})
    assert "skipped; 1 left" in skipped.text and "1 skipped before" in skipped.text  # a skip comes back

    answers = review.read_answers(project["answers"]).set_index("item_id")
    assert answers.loc[first, ["label", "action", "reviewer"]].tolist() == [
        queue.at[first, "suggested"], "accept", "admin-user"
    ]  # fmt: skip
    assert answers.loc[second, ["label", "action"]].tolist() == [wrong, "correct"]
    assert answers.at[third, "action"] == "skip" and answers.at[first, "reviewed_at"]
    assert review.human_labels(review.read_answers(project["answers"])) == {
        first: queue.at[first, "suggested"], second: wrong
    }  # fmt: skip
    left = review.pending(review.read_queue(project["queue"]), review.read_answers(project["answers"]))
    assert left["item_id"].tolist() == [third]

    again = client.post("/review/answer", data={"item_id": first, "action": "accept"})
    assert "already answered" in again.text  # a double key press does not answer twice
    bad = client.post("/review/answer", data={"item_id": third, "action": "correct", "label": "nope"})
    assert "unknown label" in bad.text
    client.post("/review/answer", data={"item_id": third, "action": "correct", "label": LABELS[0]})
    assert 'id="done"' in client.get("/review").text
