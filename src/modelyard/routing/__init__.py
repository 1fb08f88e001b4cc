"""Routing: which deployment answers a request, in which order the others are tried, and why."""
