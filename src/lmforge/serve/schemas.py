"""Request and response bodies of the HTTP API (they are the OpenAPI schema).

Every text a client sends is checked here, at the edge, before it can reach a tokenizer, a
shared micro-batch or the database: valid JSON may still carry a lone surrogate (``"\\ud800"``),
which no tokenizer can encode and no UTF-8 column can store, or a NUL, which PostgreSQL text
refuses. Such a text is the client's error: 422 with the field and item index in ``loc``
(``["body", "texts", 3]``), and it never shares a model call with other clients' texts.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

# What cannot be encoded as UTF-8 (lone surrogates) or stored as text everywhere (NUL).
_UNUSABLE = re.compile("[\x00\ud800-\udfff]")


def usable_text(text: str) -> str:
    """`text` unchanged, or a 422 naming the first character no model or store can take."""
    bad = _UNUSABLE.search(text)
    if bad is None:
        return text
    char = bad.group()
    what = "a NUL character" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X})"
    raise PydanticCustomError(
        "unusable_text",
        "character {position} is {what}, which no model or store accepts: send valid Unicode text",
        {"position": bad.start(), "what": what},
    )


Text = Annotated[str, AfterValidator(usable_text)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClassifyRequest(Body):
    texts: list[Text] = Field(min_length=1, description="Texts to classify, in order.")


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
    prediction_id: Text | None = Field(None, description="The id a prediction returned.")
    label: Text | None = Field(None, description="The correct label (classification).")
    rating: int | None = Field(None, ge=-1, le=5, description="-1/1 thumbs, or 1-5 stars.")
    corrected_output: Text | None = Field(
        None, max_length=100_000, description="A better answer (generation)."
    )
    text: Text | None = Field(
        None, max_length=100_000, description="The input text, when the server did not log it."
    )


class FeedbackResponse(BaseModel):
    id: int
    status: str


class ChatMessage(Body):
    role: Literal["system", "user", "assistant"]
    content: Text


class ChatRequest(Body):
    model: Text | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stream: bool = False


class CompletionRequest(Body):
    model: Text | None = None
    prompt: Text
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stream: bool = False


class RevokeRequest(Body):
    key: Text = Field(
        min_length=1, max_length=300, description="The key's id, prefix, name, or the secret itself."
    )


class ErrorResponse(BaseModel):
    detail: str
