"""Structured outputs and function calling: which JSON Schema the gateway can enforce, the
output contract of a request, and validation of what a model produced against it."""
