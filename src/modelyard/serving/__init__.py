"""Use-cases, one per request family: authenticate, resolve, admit, generate, shape the answer."""
