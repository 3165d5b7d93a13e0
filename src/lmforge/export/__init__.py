"""Export trained models to formats other runtimes load (GGUF for llama.cpp and friends)."""
