"""The audit log: a hash-chained, tamper-evident record of admin mutations and denials."""
