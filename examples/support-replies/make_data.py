"""Writes replies.jsonl: customer messages and the support team's replies (instruction,
input, output), made up for lmforge's generation example. Run: python make_data.py"""

import json
import random
from pathlib import Path

PRODUCTS = ["router", "laptop", "headphones", "phone", "smartwatch", "printer", "camera", "tablet"]
ISSUES = [
    (
        "my {p} arrived broken.",
        "I'm sorry your {p} arrived damaged. We will send a replacement today at no cost.",
    ),
    ("where is my {p} order?", "Your {p} has shipped and should arrive within three business days."),
    (
        "I want to return my {p}.",
        "You can return the {p} within 30 days; we have emailed you a free return label.",
    ),
    (
        "my {p} will not turn on.",
        "Please charge the {p} for one hour and hold the power button for ten seconds.",
    ),
    ("I was charged twice for my {p}.", "We found the duplicate charge for your {p} and have refunded it."),
    (
        "how long is the warranty on the {p}?",
        "The {p} comes with a two-year warranty covering manufacturing defects.",
    ),
]
OPENERS = ["Hi,", "Hello,", "Hey there,", "Good morning,", ""]
CLOSERS = ["Thanks.", "Please help.", "Any update?", "", "Cheers."]


def main() -> None:
    rng = random.Random(7)
    rows = []
    for product in PRODUCTS:
        for ask, reply in ISSUES:
            message = " ".join(
                x for x in (rng.choice(OPENERS), ask.format(p=product), rng.choice(CLOSERS)) if x
            )
            rows.append(
                {
                    "instruction": "Write a short, polite reply to this customer message.",
                    "input": message[0].upper() + message[1:],
                    "output": reply.format(p=product),
                }
            )
    rng.shuffle(rows)
    path = Path(__file__).with_name("replies.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()
