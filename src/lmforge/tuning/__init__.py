"""Hyperparameter search with optuna: search space, trial objective, executors."""
