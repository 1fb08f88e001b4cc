"""Amazon Bedrock (Converse and ConverseStream, SigV4) as a chat provider."""

from modelyard.providers.bedrock.provider import BedrockProvider

__all__ = ["BedrockProvider"]
