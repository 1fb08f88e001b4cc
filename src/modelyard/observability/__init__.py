"""Logs, metrics and traces. Nothing here ever records prompt or completion text."""
