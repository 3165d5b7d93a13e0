"""What differs between tasks: data encoding, metrics, prediction."""
