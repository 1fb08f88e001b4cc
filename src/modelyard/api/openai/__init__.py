"""The OpenAI-compatible surface (also what the Mistral SDK and LangChain speak)."""
