"""Money: what a request may cost, what it did cost, and the exact record of it."""
