"""Known models (the zoo), resolving a model reference, and loading it."""
