"""A shipped test kit: fake upstream servers on loopback that speak real wire formats."""
