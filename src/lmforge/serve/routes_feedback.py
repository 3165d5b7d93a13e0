"""`/v1/feedback`: a correct label, a rating or a corrected answer about a prediction.

Refusals are raised as the store's exception types (`InvalidFeedback` 422, `UnknownPrediction`
404); `serve/errors.py` turns them into statuses.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends

from lmforge.serve.context import ERRORS, FEEDBACK, ServeContext, context
from lmforge.serve.schemas import ErrorResponse, FeedbackRequest, FeedbackResponse
from lmforge.serve.store import FeedbackItem, InvalidFeedback

router = APIRouter(tags=["feedback"])


@router.post(
    "/v1/feedback", response_model=FeedbackResponse, responses={**ERRORS, 404: {"model": ErrorResponse}}
)
async def post_feedback(
    body: FeedbackRequest, key: Any = Depends(FEEDBACK), ctx: ServeContext = Depends(context)
) -> FeedbackResponse:
    """A correct label, a rating or a corrected answer; stored durably before the reply."""
    loaded = ctx.serving()
    item = feedback_item(body, loaded.predictor.labels, getattr(key, "name", None))
    await asyncio.to_thread(ctx.predlog.flush)  # the prediction it refers to may still be buffered
    feedback_id = await asyncio.to_thread(ctx.store.add_feedback, item)
    return FeedbackResponse(id=feedback_id, status="pending")


def feedback_item(body: FeedbackRequest, labels: list[str], key_name: str | None) -> FeedbackItem:
    """The store's item for a request: exactly one kind, and a label the model knows.

    Raises:
        InvalidFeedback: no kind or several, or a label outside `labels` (when there are any).
    """
    kinds = [
        kind
        for kind, value in (
            ("label", body.label),
            ("rating", body.rating),
            ("correction", body.corrected_output),
        )
        if value is not None
    ]
    if len(kinds) != 1:
        raise InvalidFeedback("send exactly one of label, rating, corrected_output")
    if body.label is not None and labels and body.label not in labels:
        raise InvalidFeedback(f"unknown label {body.label!r}; labels: {', '.join(labels)}")
    return FeedbackItem(
        prediction_id=body.prediction_id,
        kind=kinds[0],
        label=body.label,
        rating=body.rating,
        corrected_output=body.corrected_output,
        text=body.text,
        key_name=key_name,
    )
