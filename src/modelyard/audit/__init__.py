"""What the gateway keeps for compliance: the hash-chained audit log of admin mutations and
denials, the bounded record of failed logins, and the content log of opted-in projects."""
