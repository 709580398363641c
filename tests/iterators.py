"""Typed helpers for the async iterators the code under test hands out."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator


async def close(stream: AsyncIterator[object]) -> None:
    """Close a stream typed as an `AsyncIterator` as a leaving client does: it must be an
    async generator, whose `aclose` runs its cleanup at once."""
    assert isinstance(stream, AsyncGenerator), f"{stream!r} cannot be closed"
    await stream.aclose()
