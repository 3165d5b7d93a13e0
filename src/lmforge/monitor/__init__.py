"""Monitoring served models: drift of recent traffic against the training data."""
