"""Who is calling: API keys and the Principal they authenticate as."""
