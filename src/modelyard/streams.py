"""What every stream the gateway relays needs, whatever it carries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any


async def close_stream(stream: AsyncIterator[Any]) -> None:
    """Close an iterator however iteration ended, if it can be closed (an async generator), so
    that an abandoned answer closes its upstream connection or stops its local job now, not
    when the iterator is collected."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
