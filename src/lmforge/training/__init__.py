"""Fine-tuning shared by the train, tune, select and cross-validation code paths."""
