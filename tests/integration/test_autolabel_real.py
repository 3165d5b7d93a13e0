"""Auto-labelling with the real shipped models: minilm-l6 embeddings and smollm2-135m zero-shot."""

from __future__ import annotations

import pytest

from lmforge.data.autolabel import auto_label

pytestmark = pytest.mark.integration

LABELLED = {
    "weather": [
        "will it rain tomorrow",
        "what is the forecast for this weekend",
        "how hot will it be today",
        "is it going to snow tonight",
        "do I need an umbrella this afternoon",
        "what's the temperature outside right now",
        "will it be windy on saturday",
        "is there a storm coming this week",
        "how cold is it going to get tonight",
        "will the sun come out later",
        "is it foggy this morning",
        "what will the weather be like in paris",
        "any chance of thunderstorms today",
    ],
    "alarm": [
        "wake me up at 7 am",
        "set an alarm for six thirty",
        "cancel my morning alarm",
        "set an alarm for 5 tomorrow morning",
        "turn off all my alarms",
        "remind me with an alarm at noon",
        "change my alarm to 8 o'clock",
        "I need an alarm in 20 minutes",
        "delete the alarm for monday",
        "set a wake up alarm for 6:15",
        "snooze the alarm for ten minutes",
        "what alarms do I have set",
        "make an alarm for 9 pm tonight",
    ],
    "restaurant": [
        "book a table for two at an italian place",
        "reserve a table for four tonight at 8",
        "find me a good sushi restaurant nearby",
        "I want to make a dinner reservation for friday",
        "is the thai restaurant open now",
        "get me a table at the steakhouse for saturday",
        "recommend a cheap place to eat downtown",
        "cancel my restaurant booking for tonight",
        "book dinner for six people at seven",
        "which restaurants near me serve vegan food",
        "reserve a spot for lunch tomorrow",
        "find a pizza place that delivers",
        "make a reservation at the french bistro",
    ],
}
UNLABELLED = [
    ("is it going to be sunny tomorrow", "weather"),
    ("how much rain are we expecting tonight", "weather"),
    ("what's the weather in london", "weather"),
    ("wake me up at half past six", "alarm"),
    ("set my alarm for 7:45 tomorrow", "alarm"),
    ("turn off the alarm for tomorrow", "alarm"),
    ("book a table for three at the mexican restaurant", "restaurant"),
    ("I'd like to reserve a table for dinner tonight", "restaurant"),
    ("find a nice seafood restaurant close by", "restaurant"),
    ("will there be a frost tonight", "weather"),
]
ZERO_SHOT = [
    ("The striker scored twice and the team won the championship final.", "sports"),
    ("The goalkeeper saved a penalty in the last minute of the match.", "sports"),
    ("Whisk the eggs with sugar, then bake the cake for 30 minutes.", "cooking"),
    ("Chop the onions and simmer them in the tomato sauce.", "cooking"),
    ("Heavy rain and strong winds are expected tomorrow afternoon.", "weather"),
    ("It will be sunny and warm this weekend with clear skies.", "weather"),
]


def test_embeddings_probe_labels_clear_intents() -> None:
    texts = [t for ts in LABELLED.values() for t in ts]
    labels = [label for label, ts in LABELLED.items() for _ in ts]
    result = auto_label(
        [t for t, _ in UNLABELLED], sorted(LABELLED), labeled_texts=texts, labeled_labels=labels
    )
    assert result.method == "embeddings" and result.model == "minilm-l6"
    right = sum(got == want for got, (_, want) in zip(result.labels, UNLABELLED, strict=True))
    print(f"embeddings: {right}/10 right, mean confidence {sum(result.confidence) / 10:.2f}")
    assert right >= 8
    # With C=10 clear rows are confident enough to clear the default review threshold (0.7).
    assert sum(c >= 0.7 for c, ok in zip(result.confidence, result.labels, strict=True) if ok) >= 5


def test_few_labels_fall_back_to_zero_shot_smollm2_with_examples() -> None:
    # One labelled row per class: too few for the probe, so `auto` prompts smollm2-135m, showing
    # those rows as examples. Measured: 6/6 right with them; 3/6 without any (it answered
    # "weather", the last label listed, for most texts), so only the few-shot case is asserted.
    examples = [
        ("We won the football game 3-1 last night.", "sports"),
        ("Add salt and stir the pasta for ten minutes.", "cooking"),
        ("Expect cloudy skies and light snow on monday.", "weather"),
    ]
    result = auto_label(
        [t for t, _ in ZERO_SHOT],
        ["sports", "cooking", "weather"],
        labeled_texts=[t for t, _ in examples],
        labeled_labels=[label for _, label in examples],
    )
    assert result.method == "zero-shot" and result.model == "smollm2-135m"
    right = sum(got == want for got, (_, want) in zip(result.labels, ZERO_SHOT, strict=True))
    print(f"zero-shot: {right}/6 right, confidence {[round(c, 2) for c in result.confidence]}")
    assert right >= 5
