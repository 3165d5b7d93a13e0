"""Request and response bodies of the HTTP API (they are the OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClassifyRequest(Body):
    texts: list[str] = Field(min_length=1, description="Texts to classify, in order.")


class Prediction(BaseModel):
    id: str = Field(description="Prediction id: send it back with /v1/feedback.")
    label: str
    confidence: float
    probabilities: dict[str, float]


class ClassifyResponse(BaseModel):
    model: str
    version: str
    predictions: list[Prediction]


class FeedbackRequest(Body):
    prediction_id: str | None = Field(None, description="The id a prediction returned.")
    label: str | None = Field(None, description="The correct label (classification).")
    rating: int | None = Field(None, ge=-1, le=5, description="-1/1 thumbs, or 1-5 stars.")
    corrected_output: str | None = Field(
        None, max_length=100_000, description="A better answer (generation)."
    )
    text: str | None = Field(
        None, max_length=100_000, description="The input text, when the server did not log it."
    )


class FeedbackResponse(BaseModel):
    id: int
    status: str


class ChatMessage(Body):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(Body):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stream: bool = False


class CompletionRequest(Body):
    model: str | None = None
    prompt: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stream: bool = False


class ErrorResponse(BaseModel):
    detail: str
