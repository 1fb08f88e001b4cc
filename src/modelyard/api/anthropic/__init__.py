"""The Anthropic Messages surface: `/v1/messages`, `/v1/messages/count_tokens`, and the models
list in Anthropic's shape (what the `anthropic` SDK and LangChain's ChatAnthropic speak)."""
