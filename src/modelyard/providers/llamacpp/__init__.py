"""The embedded llama.cpp engine: local GGUF models served in the gateway process."""
