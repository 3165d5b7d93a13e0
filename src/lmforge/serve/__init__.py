"""Serving: FastAPI app, API keys, micro-batching, feedback and prediction stores, metrics."""
