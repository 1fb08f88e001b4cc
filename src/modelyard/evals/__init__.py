"""Evaluation: task suites scored against catalog models and routes through the gateway's own
serving path, stored results with intervals, reports, and routes recommended from them."""
