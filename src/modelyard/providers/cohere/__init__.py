"""Cohere's v2 Chat API as a chat provider: `provider.py` (the I/O), `request.py` (the canonical
request as Cohere's body), `answer.py` and `stream.py` (Cohere's answers as events),
`errors.py` (its failures as ours)."""

from modelyard.providers.cohere.provider import CohereProvider

__all__ = ["CohereProvider"]
