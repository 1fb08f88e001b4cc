"""The `anthropic` provider: Anthropic's Messages API (`POST {base_url}/messages`), translated
from and to the canonical chat request. `request.py` and `tools.py` build the upstream body,
`reply.py` and `stream.py` read its answers, `errors.py` maps its failures, `provider.py` does
the I/O."""

from modelyard.providers.anthropic.provider import AnthropicProvider

__all__ = ["AnthropicProvider"]
