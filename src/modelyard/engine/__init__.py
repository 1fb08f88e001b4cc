"""The local engine: llama.cpp serving one GGUF model in a process of its own.

Everything here but `wire` runs inside an engine process and loads llama.cpp; the gateway only
imports `wire`, so that a native crash ends an engine process, never the gateway.
"""
