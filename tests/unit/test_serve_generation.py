"""`lmforge serve` on a registered tiny generation model: the OpenAI-compatible
`/v1/chat/completions` and `/v1/completions` routes, SSE streaming, limits, auth, and the
prediction log / feedback round trip."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lmforge.config import ServeConfig, load_config
from lmforge.pipeline.runner import run_pipeline
from lmforge.serve.app import create_app
from lmforge.serve.keys import KeyStore
from lmforge.serve.store import PredictionRow, ServeStore
from tests.conftest import make_instructions

NAME = "gen-serve-test"
MAX_NEW_TOKENS = 16
MAX_CHARS = 400
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
MESSAGES = [{"role": "user", "content": "what is the opposite of hot"}]
# The tiny tokenizer's ChatML rendering of MESSAGES: the model was trained to answer after it
# (a bare sentence gets an immediate end of turn, i.e. an empty completion).
PROMPT = "<|im_start|>user\nwhat is the opposite of hot<|im_end|>\n<|im_start|>assistant\n"


@dataclass
class Server:
    client: TestClient
    keys: dict[str, str]
    state: Path

    def post(self, path: str, body: Any, key: str | None = "predict") -> Any:
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        return self.client.post(path, json=body, headers=headers)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("serve-gen")
    data = folder / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_instructions()), encoding="utf-8")
    uri = f"sqlite:///{folder}/mlruns.db"
    config: dict[str, Any] = {
        "project": NAME,
        "task": "generation",
        "data": {"train": str(data)},
        "model": str(tiny_llama),
        "split": {"validation": 0.15, "test": 0.15, "seed": 1},
        "train": {
            "method": "full",  # a tiny random model learns in a few steps only when all of it trains
            "epochs": 12,  # fewer, and the model answers every prompt with an immediate end of turn
            "batch_size": 8,
            "learning_rate": 5e-3,
            "max_length": 32,
            "logging_steps": 5,
            "early_stopping_patience": None,
        },
        "evaluate": {"max_new_tokens": 4, "generation_rows": 4, "samples": 2},
        "gate": {"enabled": False},  # served by version number: it need not beat anything
        "export": {"gguf": False},  # a word-level tokenizer cannot be written as GGUF anyway
        "tracking": {"uri": uri, "tensorboard": False},
        "output_dir": str(folder / "runs"),
    }
    result = run_pipeline(load_config(data=config))
    version = result.artifacts["register"].summary["version"]

    state = folder / "state"
    state.mkdir()
    store = KeyStore(state / "keys.db")
    keys = {scope: store.create(scope, name=scope).secret for scope in ("predict", "admin")}
    cfg = ServeConfig(
        state_dir=str(state), reload_seconds=0, max_new_tokens=MAX_NEW_TOKENS, max_chars=MAX_CHARS
    )
    app = create_app(f"{NAME}@{version}", uri, cfg, auth=True)
    with TestClient(app) as client:
        yield Server(client, keys, state)


def _events(response: Any) -> list[Any]:
    """The `data:` payloads of a server-sent-event body, JSON-decoded except `[DONE]`."""
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = [line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")]
    return [p if p == "[DONE]" else json.loads(p) for p in payloads]


def _answer(response: Any, path: str, stream: bool) -> tuple[str, str]:
    """The completion id and text of a 200 answer, streamed or not."""
    assert response.status_code == 200, response.text
    if not stream:
        reply = response.json()
        choice = reply["choices"][0]
        return reply["id"], choice["message"]["content"] if path == CHAT else choice["text"]
    events = _events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    pieces = [
        c["choices"][0]["delta"].get("content", "") if path == CHAT else c["choices"][0]["text"]
        for c in chunks
    ]
    return chunks[0]["id"], "".join(pieces)


def _logged(state: Path, prediction_id: str, timeout: float = 10.0) -> PredictionRow:
    """The prediction log is flushed every 0.25 s off the request path: poll for the row."""
    store = ServeStore(f"sqlite:///{state / 'feedback.db'}")
    try:
        deadline = time.monotonic() + timeout
        while (row := store.get_prediction(prediction_id)) is None:
            assert time.monotonic() < deadline, f"prediction {prediction_id} never logged"
            time.sleep(0.1)
        return row
    finally:
        store.close()


def test_chat_completion_has_the_openai_shape_and_greedy_is_deterministic(server: Server) -> None:
    body = {"messages": MESSAGES, "max_tokens": 8, "temperature": 0}
    first = server.post(CHAT, body)
    assert first.status_code == 200, first.text
    reply = first.json()
    assert reply["object"] == "chat.completion"
    assert reply["id"].startswith("chatcmpl-")
    assert reply["model"] == NAME
    assert isinstance(reply["created"], int)
    choice = reply["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    assert isinstance(content, str) and content.strip()  # the trained model answers something
    usage = reply["usage"]
    assert all(type(usage[k]) is int for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] >= 1
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    again = server.post(CHAT, body).json()
    assert again["choices"][0]["message"]["content"] == content
    assert again["id"] != reply["id"]
    # /v1/completions on the same rendered prompt continues it the same way.
    raw = server.post(COMPLETIONS, {"prompt": PROMPT, "max_tokens": 8}).json()
    assert raw["object"] == "text_completion" and raw["id"].startswith("cmpl-")
    assert raw["choices"][0]["text"] == content and raw["model"] == NAME
    assert raw["usage"]["prompt_tokens"] == usage["prompt_tokens"]


@pytest.mark.parametrize(
    ("path", "body"),
    [(CHAT, {"messages": MESSAGES, "max_tokens": 8}), (COMPLETIONS, {"prompt": PROMPT, "max_tokens": 8})],
    ids=["chat", "completion"],
)
def test_streaming_concatenates_to_the_non_streaming_answer(
    server: Server, path: str, body: dict[str, Any]
) -> None:
    chat = path == CHAT
    plain = server.post(path, body)
    assert plain.json()["object"] == ("chat.completion" if chat else "text_completion")
    _, expected = _answer(plain, path, stream=False)
    assert expected.strip()

    streamed = server.post(path, {**body, "stream": True})
    rid, text = _answer(streamed, path, stream=True)
    assert text == expected
    chunks = _events(streamed)[:-1]
    assert len(chunks) >= 2  # at least one piece of text, then the closing chunk
    assert {c["object"] for c in chunks} == {"chat.completion.chunk" if chat else "text_completion"}
    assert {c["id"] for c in chunks} == {rid} and all(c["model"] == NAME for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    if chat:
        assert chunks[-1]["choices"][0]["delta"] == {}


@pytest.mark.parametrize("path", [CHAT, COMPLETIONS])
@pytest.mark.parametrize("stream", [False, True])
def test_max_tokens_is_respected(server: Server, path: str, stream: bool) -> None:
    """Greedy, the trained model stops after one word; sampling hot it rambles until the cap."""
    import torch

    torch.manual_seed(0)  # generate() samples from torch's global generator: repeatable draws
    body: dict[str, Any] = {"max_tokens": 3, "stream": stream, "temperature": 2.0}
    body.update({"messages": MESSAGES} if path == CHAT else {"prompt": PROMPT})
    words = []
    for _ in range(16):
        response = server.post(path, body)
        _, text = _answer(response, path, stream)
        # Each token of the word-level tokenizer decodes to one word (special tokens to none).
        words.append(len(text.split()))
        if not stream:
            # usage re-tokenizes the decoded answer; this tokenizer round-trips exactly, so
            # no slack (+1) is needed: it never counts more tokens than were generated.
            assert response.json()["usage"]["completion_tokens"] == words[-1]
    assert max(words) == 3, words  # the cap is reached, and never passed


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        (CHAT, {"messages": MESSAGES, "max_tokens": MAX_NEW_TOKENS + 1}, 422, "serve.max_new_tokens"),
        (COMPLETIONS, {"prompt": PROMPT, "max_tokens": MAX_NEW_TOKENS + 1}, 422, "serve.max_new_tokens"),
        (CHAT, {"messages": [{"role": "user", "content": "hot " * 200}]}, 413, "serve.max_chars"),
        (COMPLETIONS, {"prompt": "x" * (MAX_CHARS + 1)}, 413, "serve.max_chars"),
        (COMPLETIONS, {"prompt": "", "stream": True}, 422, "the prompt is empty"),
        (COMPLETIONS, {"prompt": "  \n "}, 422, "the prompt is empty"),
        ("/v1/classify", {"texts": ["hello"]}, 422, CHAT),
        (CHAT, {"messages": [{"role": "wizard", "content": "hi"}]}, 422, ""),
        (CHAT, {"messages": []}, 422, ""),
        (CHAT, {"messages": [{"role": "user"}]}, 422, ""),
        (CHAT, {"messages": MESSAGES, "max_tokens": 0}, 422, ""),
        (CHAT, {"messages": MESSAGES, "temperature": 3}, 422, ""),
        (CHAT, {"messages": MESSAGES, "unknown": 1}, 422, ""),
        (COMPLETIONS, {"messages": MESSAGES}, 422, ""),
    ],
    ids=[
        "chat-too-many-tokens",
        "completion-too-many-tokens",
        "chat-too-long",
        "completion-too-long",
        "empty-prompt",
        "blank-prompt",
        "classify-on-generation",
        "bad-role",
        "no-messages",
        "no-content",
        "zero-tokens",
        "hot-temperature",
        "extra-field",
        "completion-without-prompt",
    ],
)
def test_limits_and_malformed_requests(
    server: Server, path: str, body: dict[str, Any], status: int, message: str
) -> None:
    response = server.post(path, body)
    assert response.status_code == status, response.text
    if message:
        assert message in response.json()["detail"]


def test_rejected_requests_give_their_generation_slot_back(server: Server) -> None:
    """Requests refused before generating, and finished streams, free their `max_generations` slot."""
    slots = ServeConfig().max_generations
    for _ in range(slots + 1):
        assert server.post(CHAT, {"messages": MESSAGES, "max_tokens": MAX_NEW_TOKENS + 1}).status_code == 422
    for _ in range(slots + 1):
        assert server.post(CHAT, {"messages": MESSAGES, "max_tokens": 2, "stream": True}).status_code == 200
    assert server.post(CHAT, {"messages": MESSAGES, "max_tokens": 2}).status_code == 200


def test_a_failing_generate_ends_the_stream_instead_of_hanging(server: Server) -> None:
    """An error inside `model.generate` (its own thread) reaches the reader and frees the model.

    Before the fix the reader waited on the streamer forever, holding the predictor's lock, so
    every later generation hung too. max_tokens=0 is refused by the request schema, so the
    predictor is called directly to make generate() raise.
    """
    import threading

    from lmforge.serve.predictor import ServeError

    predictor = server.client.app.state.serve.holder.current.predictor  # type: ignore[attr-defined]
    outcome: list[BaseException | list[str]] = []

    def call() -> None:
        try:
            outcome.append(list(predictor.stream(PROMPT, max_new_tokens=0, temperature=0, top_p=1)))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "the stream hung after generate() failed"
    assert isinstance(outcome[0], ServeError) and "generation failed" in str(outcome[0])
    with pytest.raises(ServeError, match="no tokens"):
        list(predictor.stream("", max_new_tokens=2, temperature=0, top_p=1))
    assert server.post(CHAT, {"messages": MESSAGES, "max_tokens": 2}).status_code == 200


@pytest.mark.parametrize(
    ("path", "body"), [(CHAT, {"messages": MESSAGES}), (COMPLETIONS, {"prompt": PROMPT})]
)
@pytest.mark.parametrize("secret", [None, "lmf_wrong_key"])
def test_generation_routes_need_a_key(
    server: Server, path: str, body: dict[str, Any], secret: str | None
) -> None:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    response = server.client.post(path, json={**body, "max_tokens": 2}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("path", "body", "stream", "feedback"),
    [
        (CHAT, {"messages": MESSAGES}, False, {"corrected_output": "cold"}),
        (CHAT, {"messages": MESSAGES}, True, {"rating": 1}),
        (COMPLETIONS, {"prompt": PROMPT}, False, {"rating": -1}),
        (COMPLETIONS, {"prompt": PROMPT}, True, {"corrected_output": "cold"}),
    ],
    ids=["chat", "chat-stream", "completion", "completion-stream"],
)
def test_completions_are_logged_and_take_feedback(
    server: Server, path: str, body: dict[str, Any], stream: bool, feedback: dict[str, Any]
) -> None:
    rid, text = _answer(server.post(path, {**body, "max_tokens": 6, "stream": stream}), path, stream)
    assert rid.startswith("chatcmpl-" if path == CHAT else "cmpl-") and text.strip()

    # The id a client sees is the id the prediction was logged under.
    row = _logged(server.state, rid)
    assert row.route == path and row.model_name == NAME and row.label is None
    # log_inputs is off: the prompt's hash and length only, and no answer (it may echo the prompt)
    assert row.text is None and row.output is None and row.text_length > 0

    sent = server.post("/v1/feedback", {"prediction_id": rid, **feedback}, key="admin")
    assert sent.status_code == 200, sent.text
    assert sent.json()["status"] == "pending"
    store = ServeStore(f"sqlite:///{server.state / 'feedback.db'}")
    try:
        stored = [f for f in store.feedback() if f.id == sent.json()["id"]]
    finally:
        store.close()
    assert len(stored) == 1 and stored[0].prediction_id == rid
    assert stored[0].kind == ("correction" if "corrected_output" in feedback else "rating")


def test_feedback_needs_the_feedback_scope(server: Server) -> None:
    rid = server.post(CHAT, {"messages": MESSAGES, "max_tokens": 2}).json()["id"]
    assert server.post("/v1/feedback", {"prediction_id": rid, "rating": 1}).status_code == 403


def test_models_lists_the_generation_model(server: Server) -> None:
    response = server.client.get("/v1/models", headers={"Authorization": f"Bearer {server.keys['predict']}"})
    assert response.status_code == 200
    model = response.json()["data"][0]
    assert model["id"] == NAME and model["task"] == "generation" and model["runtime"] == "torch"
    assert model["labels"] == []


def test_log_inputs_keeps_what_the_user_asked_and_the_answer_masked(server: Server, tmp_path: Path) -> None:
    models = server.client.get("/v1/models", headers={"Authorization": f"Bearer {server.keys['predict']}"})
    version = models.json()["data"][0]["version"]
    uri = f"sqlite:///{server.state.parent}/mlruns.db"
    cfg = ServeConfig(state_dir=str(tmp_path), reload_seconds=0, log_inputs=True)
    messages = [
        *MESSAGES[:-1],
        {"role": "user", "content": MESSAGES[-1]["content"] + " mail bob@example.com"},
    ]
    with TestClient(create_app(f"{NAME}@{version}", uri, cfg, auth=False)) as client:
        reply = client.post(CHAT, json={"messages": messages, "max_tokens": 4}).json()
    row = ServeStore(f"sqlite:///{tmp_path / 'feedback.db'}").get_prediction(reply["id"])
    assert row is not None
    # The user's last message, not the rendered chat template, with its e-mail address masked.
    assert row.text == MESSAGES[-1]["content"] + " mail <EMAIL>"
    assert row.output == reply["choices"][0]["message"]["content"]


def _raw_post(server: Server, path: str, body: Any) -> Any:
    """POST `body` as ASCII JSON, so a lone surrogate travels as a valid ``\\ud800`` escape."""
    headers = {"Authorization": f"Bearer {server.keys['predict']}", "Content-Type": "application/json"}
    return server.client.post(path, content=json.dumps(body).encode(), headers=headers)


HOSTILE = [
    (CHAT, {"messages": [{"role": "user", "content": "hot \ud800"}]}, ["body", "messages", 0, "content"]),
    (
        CHAT,
        {"messages": [{"role": "system", "content": "ok"}, {"role": "user", "content": "nul\x00"}]},
        ["body", "messages", 1, "content"],
    ),
    (COMPLETIONS, {"prompt": PROMPT + "\udfff"}, ["body", "prompt"]),
    (COMPLETIONS, {"prompt": "\x00", "stream": True}, ["body", "prompt"]),
]


@pytest.mark.parametrize(
    ("path", "body", "loc"), HOSTILE, ids=["chat-surrogate", "chat-nul", "prompt", "stream"]
)
def test_unencodable_text_is_the_clients_error(server: Server, path: str, body: Any, loc: list[Any]) -> None:
    """Regression (issue 21): a lone surrogate reached the tokenizer and answered 500."""
    response = _raw_post(server, path, body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc


def test_bad_generation_requests_do_not_touch_good_ones_sent_with_them(server: Server) -> None:
    """Good and hostile requests from 8 threads at once: every good one gets its lone answer."""
    from concurrent.futures import ThreadPoolExecutor

    good = {"messages": MESSAGES, "max_tokens": 4}
    alone = _answer(server.post(CHAT, good), CHAT, stream=False)[1]
    bodies = [(CHAT, good)] * 4 + [(path, body) for path, body, _ in HOSTILE]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda pb: _raw_post(server, *pb), bodies))
    assert [_answer(r, CHAT, stream=False)[1] for r in replies[:4]] == [alone] * 4
    assert [r.status_code for r in replies[4:]] == [422] * len(HOSTILE)
