"""The admin API under /admin: projects, members, keys, audit; described in /openapi.json."""
