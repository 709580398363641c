"""The capabilities book: what the backends offer, merged, for submission validation.

Each backend's `/object_info` answer replaces that backend's entry; `current()` is the
union over the backends that answered, or the configured fallback before any did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from stargraph.domain.capabilities import Capabilities
from stargraph.domain.types import BackendId

log = logging.getLogger(__name__)

Fetch = Callable[[BackendId], Awaitable[Capabilities]]


class CapabilitiesBook:
    def __init__(self, fallback: Capabilities) -> None:
        self._fallback = fallback
        self._by_backend: dict[BackendId, Capabilities] = {}
        self._merged: Capabilities | None = None

    def current(self) -> Capabilities:
        """The union of every answering backend's offer; the fallback before any answered."""
        return self._merged if self._merged is not None else self._fallback

    def update(self, backend: BackendId, capabilities: Capabilities) -> None:
        self._by_backend[backend] = capabilities
        self._merge()

    def of(self, backend: BackendId) -> Capabilities | None:
        return self._by_backend.get(backend)

    async def refresh(self, backends: Iterable[BackendId], fetch: Fetch) -> None:
        """Ask each backend (concurrently); a backend that does not answer keeps its entry."""
        listed = list(backends)
        answers = await asyncio.gather(*(fetch(b) for b in listed), return_exceptions=True)
        for backend, answer in zip(listed, answers, strict=True):
            if isinstance(answer, Capabilities):
                self.update(backend, answer)
            else:
                log.info("capabilities of %s not refreshed: %s", backend, answer)

    async def run(
        self,
        backends: Iterable[BackendId],
        fetch: Fetch,
        stop: asyncio.Event,
        interval_s: float = 60.0,
    ) -> None:
        """Refresh now and then every `interval_s` until `stop` (housekeeping timer)."""
        listed = list(backends)
        while not stop.is_set():
            await self.refresh(listed, fetch)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)

    def _merge(self) -> None:
        merged: Capabilities | None = None
        for capabilities in self._by_backend.values():
            merged = capabilities if merged is None else merged.merged(capabilities)
        self._merged = merged
