"""OpenAI-compatible `/v1/chat/completions` and `/v1/completions` for generation models,
with server-sent-event streaming (`"stream": true`), so OpenAI client libraries work as-is.

Generation is not micro-batched: a semaphore (one per app, in its `ServeContext`) bounds
requests waiting or running to `serve.max_generations`; beyond it a request gets 503 at once.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool

from lmforge.serve.context import ERRORS, PREDICT, ServeContext, context
from lmforge.serve.schemas import ChatRequest, CompletionRequest
from lmforge.tasks.registry import get_task

router = APIRouter(tags=["predict"])


@router.post("/v1/chat/completions", responses=ERRORS)
async def chat_completions(
    body: ChatRequest, key: Any = Depends(PREDICT), ctx: ServeContext = Depends(context)
) -> Any:
    """Answer a conversation (OpenAI chat completions format)."""
    loaded = ctx.serving()
    prompt = (
        loaded.predictor.chat_prompt([m.model_dump() for m in body.messages])
        if not get_task(loaded.task).uses_labels
        else ""
    )
    asked = next((m.content for m in reversed(body.messages) if m.role == "user"), body.messages[-1].content)
    return await _respond(ctx, body, prompt, chat=True, asked=asked)


@router.post("/v1/completions", responses=ERRORS)
async def completions(
    body: CompletionRequest, key: Any = Depends(PREDICT), ctx: ServeContext = Depends(context)
) -> Any:
    """Continue a raw prompt (OpenAI completions format)."""
    return await _respond(ctx, body, body.prompt, chat=False, asked=body.prompt)


def _prepare(ctx: ServeContext, prompt: str, max_tokens: int | None) -> tuple[Any, int]:
    """The model and the tokens to generate, holding a generation slot (the caller releases it)."""
    cfg = ctx.cfg
    loaded = ctx.serving()
    if get_task(loaded.task).uses_labels:
        raise HTTPException(422, f"{loaded.name} is a classifier: use /v1/classify")
    if not prompt.strip():  # no token to continue: generate() would fail on an empty input
        raise HTTPException(422, "the prompt is empty")
    if len(prompt) > cfg.max_chars:
        raise HTTPException(
            413, f"the prompt has {len(prompt)} characters; limit serve.max_chars={cfg.max_chars}"
        )
    wanted = max_tokens or min(256, cfg.max_new_tokens)
    if wanted > cfg.max_new_tokens:
        raise HTTPException(422, f"max_tokens={wanted} exceeds serve.max_new_tokens={cfg.max_new_tokens}")
    if not ctx.generation_slots.acquire(blocking=False):
        raise HTTPException(503, "server busy: too many generations", headers={"Retry-After": "2"})
    return loaded, wanted


async def _respond(
    ctx: ServeContext, body: ChatRequest | CompletionRequest, prompt: str, chat: bool, asked: str
) -> Any:
    """`asked` is what the user wrote (the last user message, or the raw prompt): it is what
    the prediction log keeps and what a correction retrains on, not the rendered template.

    A predictor error (`EmptyPrompt`, `GenerationFailed`) propagates to `serve/errors.py`.
    """
    loaded, wanted = _prepare(ctx, prompt, body.max_tokens)
    kind = "chat.completion" if chat else "text_completion"
    rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    started = time.perf_counter()
    released = threading.Event()

    def release() -> None:  # idempotent: called by every path that may end the request
        if not released.is_set():
            released.set()
            ctx.generation_slots.release()

    def finish(text: str) -> None:
        release()
        route = "/v1/chat/completions" if chat else "/v1/completions"
        ctx.predlog.add(loaded, [asked], [text], [rid], (time.perf_counter() - started) * 1000, route=route)

    try:
        pieces = loaded.predictor.stream(
            prompt, max_new_tokens=wanted, temperature=body.temperature, top_p=body.top_p
        )
        if body.stream:
            return _SlotStream(_sse(pieces, rid, kind, loaded, chat, finish), release)
        text = "".join(await asyncio.to_thread(list, pieces))
    except BaseException:
        release()
        raise
    finish(text)
    usage = {
        "prompt_tokens": loaded.predictor.count_tokens(prompt),
        "completion_tokens": loaded.predictor.count_tokens(text),
    }
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
    choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
    return {
        "id": rid,
        "object": kind,
        "created": int(time.time()),
        "model": loaded.name,
        "choices": [choice],
        "usage": usage,
        "system_fingerprint": f"{loaded.name}-v{loaded.version}",
    }


class _SlotStream(StreamingResponse):
    """Gives the generation slot back however the response ends: a client that disconnects
    before the body starts never runs the stream generator's own `finally`."""

    def __init__(self, content: AsyncIterator[str], release: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream")
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


async def _sse(
    pieces: Iterator[str], rid: str, kind: str, loaded: Any, chat: bool, finish: Callable[[str], None]
) -> AsyncIterator[str]:
    text: list[str] = []
    chunk_kind = "chat.completion.chunk" if chat else "text_completion"
    try:
        async for piece in iterate_in_threadpool(pieces):
            if not piece:
                continue
            text.append(piece)
            delta = {"delta": {"content": piece}} if chat else {"text": piece}
            yield _event(
                {
                    "id": rid,
                    "object": chunk_kind,
                    "created": int(time.time()),
                    "model": loaded.name,
                    "choices": [{"index": 0, "finish_reason": None, **delta}],
                }
            )
        end: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
        yield _event(
            {
                "id": rid,
                "object": chunk_kind,
                "created": int(time.time()),
                "model": loaded.name,
                "choices": [{"index": 0, "finish_reason": "stop", **end}],
            }
        )
        yield "data: [DONE]\n\n"
    finally:
        finish("".join(text))


def _event(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj)}\n\n"
