"""Wire models: the JSON shapes clients send and receive, one module per API family."""
