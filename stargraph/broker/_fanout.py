"""Local fan-out parts of the event bus: followers' bounded buffers, the registry of this
process's followers, and the coalescer of queue ticks. No I/O here."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable

from stargraph.domain.events import JobEvent, SubscriberLagged
from stargraph.domain.types import UserId

NO_CURSOR = "0-0"

Key = tuple[int, int]  # a stream id as numbers, for ordering


def key_of(cursor: str) -> Key:
    """The ordering key of a stream id such as "1700000000000-3"."""
    ms, _, seq = cursor.partition("-")
    return int(ms), int(seq)


class Follower:
    """One local follower: a bounded buffer that the listener fills and the follower drains."""

    __slots__ = (
        "_buffer",
        "_limit",
        "_ready",
        "closed",
        "error",
        "last_cursor",
        "last_key",
        "moved",
        "resync",
        "ticks",
        "user_id",
    )

    def __init__(self, user_id: UserId, limit: int, ticks: bool) -> None:
        self.user_id = user_id
        self.ticks = ticks
        self._limit = limit
        self._buffer: deque[tuple[Key, JobEvent]] = deque()
        self._ready = asyncio.Event()
        self.error: SubscriberLagged | None = None
        self.closed = False
        self.resync = False
        self.moved = False
        self.last_cursor = NO_CURSOR
        self.last_key: Key = (0, 0)

    def offer(self, key: Key, event: JobEvent) -> bool:
        """Buffer one live event; False when the buffer is full."""
        if len(self._buffer) >= self._limit:
            return False
        self._buffer.append((key, event))
        self._ready.set()
        return True

    def fail(self, error: SubscriberLagged) -> None:
        self.error = error
        self._buffer.clear()
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    def flag_resync(self) -> None:
        self.resync = True
        self._ready.set()

    def flag_moved(self) -> None:
        self.moved = True
        self._ready.set()

    def advance(self, key: Key, cursor: str) -> None:
        self.last_key, self.last_cursor = key, cursor

    async def wait(self) -> None:
        """Until something is pending: events, a flag, an error or the end."""
        if not (self._buffer or self.error or self.closed or self.resync or self.moved):
            self._ready.clear()
            await self._ready.wait()

    def take(self) -> list[tuple[Key, JobEvent]]:
        taken = list(self._buffer)
        self._buffer.clear()
        return taken


class Registry:
    """The followers of this process, by user, and those that want queue ticks."""

    def __init__(self) -> None:
        self._by_user: dict[int, set[Follower]] = {}
        self.ticking: set[Follower] = set()
        self.waiters: set[asyncio.Event] = set()

    def add(self, follower: Follower) -> None:
        self._by_user.setdefault(follower.user_id, set()).add(follower)
        if follower.ticks:
            self.ticking.add(follower)

    def discard(self, follower: Follower) -> None:
        followers = self._by_user.get(follower.user_id)
        if followers is not None:
            followers.discard(follower)
            if not followers:
                del self._by_user[follower.user_id]
        self.ticking.discard(follower)

    def of(self, user_id: int) -> set[Follower] | None:
        return self._by_user.get(user_id)

    def all(self) -> list[Follower]:
        return [f for followers in self._by_user.values() for f in followers]


class Coalescer:
    """Calls `fire` at most once per `interval_s` however often it is poked, and always once
    after the last poke (leading and trailing edge), so no move goes unannounced."""

    def __init__(self, interval_s: float, fire: Callable[[], None]) -> None:
        self._interval = interval_s
        self._fire = fire
        self._last = -math.inf
        self._timer: asyncio.TimerHandle | None = None

    def poke(self) -> None:
        if self._timer is not None:
            return  # a fire is already due and will cover this poke
        loop = asyncio.get_running_loop()
        wait = self._last + self._interval - loop.time()
        if wait <= 0:
            self._run()
        else:
            self._timer = loop.call_later(wait, self._run)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _run(self) -> None:
        self._timer = None
        self._last = asyncio.get_running_loop().time()
        self._fire()
