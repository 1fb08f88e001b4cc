"""Counters for budgets and rate limits, in memory for one process or in Redis for replicas."""
