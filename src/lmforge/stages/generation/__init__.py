"""Stages of the `generation` and `language-modeling` tasks (where they differ from classification)."""
