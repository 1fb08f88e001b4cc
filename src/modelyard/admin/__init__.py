"""Administration: projects, members, keys, limits, usage reports and the audit log, as the admin
API, the CLI and (later) the console use them. Beside the request path, not on it."""
