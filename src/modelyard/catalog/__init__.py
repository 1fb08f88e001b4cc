"""The model catalog: model cards, deployments, and the lookups the request path needs."""
