"""May they: role-based access decisions, each with a reason."""
