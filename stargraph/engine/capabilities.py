"""The capabilities book: what the backends offer, merged, for submission validation.

Each backend's `/object_info` answer replaces that backend's entry; `current()` is the
union over the backends that answered, or the configured fallback before any did.

Workers ask the backends (a bounded number at a time, so a thousand backends do not queue
a thousand requests in one connection pool) and write each answer to the capabilities
board in Redis; an API process that runs no worker reads the board instead of asking every
backend itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from redis.asyncio import Redis

from stargraph.domain.capabilities import Capabilities
from stargraph.domain.types import BackendId

log = logging.getLogger(__name__)

Fetch = Callable[[BackendId], Awaitable[Capabilities]]

PROBES_AT_ONCE = 16


class CapabilitiesBoard:
    """Every backend's last answer, in one Redis hash shared by all processes."""

    def __init__(self, redis: Redis, prefix: str, ttl_s: float = 3600.0) -> None:
        self._redis = redis
        self._key = f"{prefix}:{{engine}}:capabilities"
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._seen: dict[bytes | str, Capabilities] = {}  # raw entry → decoded, to decode once

    async def publish(self, offers: Mapping[BackendId, Capabilities]) -> None:
        if not offers:
            return
        entries = {
            backend: json.dumps([list(c.checkpoints), list(c.samplers), list(c.schedulers)])
            for backend, c in offers.items()
        }
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(self._key, mapping=entries)  # type: ignore[arg-type]
            pipe.pexpire(self._key, self._ttl_ms)
            await pipe.execute()

    async def read(self, backends: Sequence[BackendId]) -> dict[BackendId, Capabilities]:
        """The last answer of each of `backends` that a worker reported."""
        if not backends:
            return {}
        raw = await self._redis.hmget(self._key, list(backends))
        found = {}
        seen: dict[bytes | str, Capabilities] = {}
        for backend, entry in zip(backends, raw, strict=True):
            if entry is None:
                continue
            offer = self._seen.get(entry) or _decoded(entry)
            if offer is not None:
                found[backend] = seen[entry] = offer
        self._seen = seen
        return found


def _decoded(entry: bytes | str) -> Capabilities | None:
    try:
        checkpoints, samplers, schedulers = json.loads(entry)
        return Capabilities(tuple(checkpoints), tuple(samplers), tuple(schedulers))
    except (ValueError, TypeError):
        log.warning("skipping an unreadable capabilities entry: %.80r", entry)
        return None


class CapabilitiesBook:
    def __init__(self, fallback: Capabilities, board: CapabilitiesBoard | None = None) -> None:
        self._fallback = fallback
        self._board = board
        self._by_backend: dict[BackendId, Capabilities] = {}
        self._merged: Capabilities | None = None
        self._stale = False
        self._probes = asyncio.Semaphore(PROBES_AT_ONCE)

    def current(self) -> Capabilities:
        """The union of every answering backend's offer; the fallback before any answered."""
        if self._stale:  # merged on first use: a thousand answers at start-up merge once
            self._stale = False
            self._merged = _merge(self._by_backend.values())
        return self._merged if self._merged is not None else self._fallback

    def update(self, backend: BackendId, capabilities: Capabilities) -> None:
        if self._by_backend.get(backend) != capabilities:
            self._by_backend[backend] = capabilities
            self._stale = True

    def of(self, backend: BackendId) -> Capabilities | None:
        return self._by_backend.get(backend)

    async def refresh(self, backends: Iterable[BackendId], fetch: Fetch) -> None:
        """Ask each backend, a few at a time; one that does not answer keeps its entry.
        The answers go to the board too, when there is one."""
        listed = list(backends)
        answers = await asyncio.gather(*(self._probe(fetch, b) for b in listed),
                                       return_exceptions=True)  # fmt: skip
        fresh = {}
        for backend, answer in zip(listed, answers, strict=True):
            if isinstance(answer, Capabilities):
                self.update(backend, answer)
                fresh[backend] = answer
            else:
                log.info("capabilities of %s not refreshed: %s", backend, answer)
        if self._board is not None:
            try:
                await self._board.publish(fresh)
            except Exception:  # the next refresh writes them again
                log.exception("could not write the capabilities of %d backend(s)", len(fresh))

    async def _probe(self, fetch: Fetch, backend: BackendId) -> Capabilities:
        async with self._probes:
            return await fetch(backend)

    async def run(
        self,
        backends: Iterable[BackendId],
        fetch: Fetch,
        stop: asyncio.Event,
        interval_s: float = 60.0,
        *,
        at_once: bool = True,
    ) -> None:
        """Refresh every `interval_s` until `stop` (housekeeping timer), the first time at
        once unless told otherwise (a worker's listeners ask on connecting)."""
        listed = list(backends)
        if not at_once:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
        while not stop.is_set():
            await self.refresh(listed, fetch)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)

    async def read_board(self, backends: Sequence[BackendId]) -> None:
        """Take each backend's last answer that a worker wrote to the board."""
        assert self._board is not None, "reading needs a board"
        for backend, offer in (await self._board.read(backends)).items():
            self.update(backend, offer)

    async def follow_board(
        self, backends: Iterable[BackendId], stop: asyncio.Event, interval_s: float = 10.0
    ) -> None:
        """Read what the workers wrote to the board, now and then every `interval_s`."""
        listed = list(backends)
        while not stop.is_set():
            try:
                await self.read_board(listed)
            except Exception:
                log.exception("could not read the capabilities board")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)


def _merge(offers: Iterable[Capabilities]) -> Capabilities | None:
    merged: Capabilities | None = None
    for capabilities in offers:
        merged = capabilities if merged is None else merged.merged(capabilities)
    return merged
