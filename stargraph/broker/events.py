"""RedisEventBus: each user's job events in a capped Redis stream, fanned out to every process.

`publish` runs one Lua script: XADD to the user's stream, then PUBLISH
`<user id> <stream id> <json>` on one channel (and, when asked, the queue-moved tick). The
stream id is the event's cursor; both steps happen at once, so the cursor order is the
delivery order in every process. `RedisJobQueue.enqueue_announced` runs the same steps in the
queue's script that adds the job (`announcement`).

Each process runs ONE listener: a pub/sub connection on the queue-moved channel, and on that
channel from its first follower on (a process that follows nobody, such as a worker, does not
read every event published). It decodes an event once, only when a local follower of its user
exists, and offers it to each such follower's bounded buffer. A follower whose buffer is full
is closed with `SubscriberLagged`; nobody waits for it. Whenever the listener resubscribes,
every follower re-reads its stream after its last cursor, so what was published while the
connection was down still arrives.

Hand-over from replay to live: a follower registers its buffer BEFORE it reads the stream,
and drops buffered events whose cursor is not after the last one it yielded. Nothing falls
between replay and live, and nothing comes twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, suppress
from datetime import UTC, datetime
from importlib.resources import files
from types import TracebackType
from typing import Self, cast

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stargraph.broker._fanout import NO_CURSOR, Coalescer, Follower, Registry, key_of
from stargraph.broker.pipelined import PipelinedScript
from stargraph.domain.errors import BadUserInput
from stargraph.domain.events import (
    CursorExpired,
    JobEvent,
    JobProgress,
    JobQueued,
    QueueMoved,
    SubscriberLagged,
    event_from_dict,
    event_to_dict,
)
from stargraph.domain.types import JobId, UserId

_log = logging.getLogger(__name__)

_LUA = files("stargraph.broker").joinpath("lua")
_EVENTS_LIB = _LUA.joinpath("events_lib.lua").read_text()
_PUBLISH_LUA = _EVENTS_LIB + "\n" + _LUA.joinpath("publish_event.lua").read_text()
_TICK_LUA = _EVENTS_LIB + "\n" + _LUA.joinpath("tick.lua").read_text()
_CURSOR = re.compile(r"\d{1,20}-\d{1,20}")
_FIRST_RETRY_S = 0.05
_MAX_RETRY_S = 2.0


def _checked_cursor(after: str) -> str:
    if not _CURSOR.fullmatch(after):
        raise BadUserInput("`after` is not a cursor given by this API", field="after")
    return after


def _decode(payload: bytes, cursor: str) -> JobEvent | None:
    try:
        return event_from_dict(json.loads(payload), cursor)
    except (ValueError, KeyError, TypeError):
        _log.warning("skipping an undecodable event at cursor %s", cursor)
        return None


def _payload(event: JobEvent) -> str:
    return json.dumps(event_to_dict(event), ensure_ascii=False, separators=(",", ":"))


class _Names:
    """Key and channel names, hash-tagged on the prefix so the script runs on Redis Cluster."""

    def __init__(self, prefix: str) -> None:
        tag = f"{{{prefix}}}"
        self._stream = f"{tag}:events:user:"
        self.channel = f"{tag}:events"
        self.ticks = f"{tag}:queue-moved"
        self.tick_gate = f"{tag}:queue-moved:gate"  # set while a tick's window is open

    def stream(self, user_id: UserId) -> str:
        return f"{self._stream}{user_id}"


class RedisEventBus:
    """The EventBus on Redis. Publishing needs no start; following needs the listener running
    (`async with bus:` or `await bus.start()` … `await bus.aclose()`).

    `redis` serves commands; `listen_redis` holds the one pub/sub connection and must have no
    socket timeout (`connect_redis(url, blocking=True)`).
    """

    def __init__(
        self,
        redis: Redis,
        listen_redis: Redis,
        prefix: str,
        *,
        stream_maxlen: int = 1000,
        stream_ttl_s: int = 24 * 3600,
        buffer_size: int = 256,
        progress_linger_s: float = 0.002,
        tick_interval_s: float = 0.25,
        replay_page: int = 200,
        max_concurrent_reads: int = 32,
    ) -> None:
        self._redis = redis
        self._listen_redis = listen_redis
        self._names = _Names(prefix)
        self._channel = self._names.channel.encode()
        self._maxlen = stream_maxlen
        self._ttl_s = stream_ttl_s
        self._buffer_size = buffer_size
        self._replay_page = replay_page
        # Many followers start (or resync after a reconnect) at once; their stream reads
        # queue here instead of exhausting the client's connection pool.
        self._reads = asyncio.Semaphore(max_concurrent_reads)
        # Progress events come by the thousand a second from a worker and may wait a moment
        # to share a round trip: fewer writes and wake-ups for this process and for Redis.
        self._publish = PipelinedScript(redis, _PUBLISH_LUA, progress_linger_s, name="events")
        self._tick_script = PipelinedScript(redis, _TICK_LUA, name="ticks")
        self._registry = Registry()
        self._tick_interval_s = tick_interval_s
        self._tick_window = max(1, round(tick_interval_s * 1000))  # ms, as Redis takes it
        self._ticker = Coalescer(tick_interval_s, self._tick)
        self._trailing_tick: asyncio.TimerHandle | None = None
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscriber: asyncio.Task[None] | None = None  # subscribes to the events, once
        self._events_live = asyncio.Event()  # that subscription was confirmed
        self._ready = asyncio.Event()
        self._retry_s = _FIRST_RETRY_S
        self._closed = False
        self.subscriptions = 0  # times the events channel was (re)subscribed: >1 after a reconnect

    # -- publishing (any process) --------------------------------------------------------

    async def publish(self, event: JobEvent, *, queue_moved: bool = False) -> str:
        """Append the event to its user's stream and fan it out; returns its cursor. With
        `queue_moved`, the same round trip does what `queue_moved()` does."""
        channel = self._names.channel
        args: list[str | int] = [self._maxlen, self._ttl_s, _payload(event), channel, event.user_id]
        keys = [self._names.stream(event.user_id)]
        if queue_moved:
            args += [self._names.ticks, self._tick_window]
            keys.append(self._names.tick_gate)
        cursor = await self._publish(keys, args, linger=isinstance(event, JobProgress))
        return cursor.decode() if isinstance(cursor, bytes) else str(cursor)

    def announcement(self, event: JobQueued) -> tuple[str, str, list[str | int]]:
        """The owner's stream, the queue-moved gate, and the arguments with which
        `RedisJobQueue.enqueue_announced` publishes `event` as `publish(event,
        queue_moved=True)` would: max length, time to live, the JSON with its position left
        for the script to fill in, the fan-out channel, the queue-moved channel and its window."""
        payload = _payload(dataclasses.replace(event, position=None))
        args: list[str | int] = [self._maxlen, self._ttl_s, payload, self._names.channel]
        args += [self._names.ticks, self._tick_window]
        return self._names.stream(event.user_id), self._names.tick_gate, args

    async def queue_moved(self) -> None:
        """Tell every process that waiting positions may have changed: at most one tick per
        tick interval goes out, and each process looks again one interval after the tick it
        hears (see `_on_tick`)."""
        await self._tick_script([self._names.tick_gate], [self._names.ticks, self._tick_window])

    async def last_cursor(self, user_id: UserId) -> str:
        """The cursor of the user's newest stored event ("0-0" when there is none)."""
        newest = await self._read(self._names.stream(user_id), reverse=True)
        return newest[0][0] if newest else NO_CURSOR

    # -- following (processes that started the listener) --------------------------------

    @property
    def subscriber_count(self) -> int:
        """Followers open in this process."""
        return len(self._registry.all())

    async def follow_user(
        self, user_id: UserId, after: str | None = None
    ) -> AsyncIterator[JobEvent]:
        """The user's events after `after` (exclusive; from the stream), then live ones; with
        no `after`, live ones from now. Raises SubscriberLagged when it falls too far behind."""
        async with aclosing(self._follow(user_id, after, ticks=False)) as items:
            async for item in items:
                if isinstance(item, JobEvent):
                    yield item

    def follow_user_and_queue(
        self, user_id: UserId, after: str | None = None
    ) -> AsyncIterator[JobEvent | QueueMoved]:
        """Like `follow_user`, interleaved with coalesced `QueueMoved` ticks."""
        return self._follow(user_id, after, ticks=True)

    async def follow_job(
        self, user_id: UserId, job_id: JobId, after: str | None = None
    ) -> AsyncIterator[JobEvent | QueueMoved]:
        """One job's events and the queue ticks; ends after the job's terminal event."""
        async with aclosing(self._follow(user_id, after, ticks=True)) as items:
            async for item in items:
                if isinstance(item, QueueMoved):
                    yield item
                elif item.job_id == job_id:
                    yield item
                    if item.is_terminal:
                        return

    async def queue_ticks(self) -> AsyncIterator[None]:
        """Yields once per coalesced queue movement (at most once per tick interval)."""
        self._require_listener()
        waiter = asyncio.Event()
        self._registry.waiters.add(waiter)
        try:
            while True:
                await waiter.wait()
                waiter.clear()
                if self._closed:
                    return
                yield None
        finally:
            self._registry.waiters.discard(waiter)

    async def _follow(
        self, user_id: UserId, after: str | None, *, ticks: bool
    ) -> AsyncGenerator[JobEvent | QueueMoved, None]:
        self._require_listener()
        start = None if after is None else _checked_cursor(after)
        follower = Follower(user_id, self._buffer_size, ticks)
        self._registry.add(follower)  # before reading the stream: see the module docstring
        try:
            if not self._events_live.is_set():
                self._want_events()
                await self._events_live.wait()
                if self._closed:
                    return
            if start is None:
                start = await self.last_cursor(user_id)
            else:
                await self._require_kept(user_id, start)
                follower.flag_resync()  # the replay is a resync from `after`
            follower.advance(key_of(start), start)
            async for item in self._drain(follower):
                yield item
        finally:
            self._registry.discard(follower)

    async def _drain(self, follower: Follower) -> AsyncIterator[JobEvent | QueueMoved]:
        while True:
            _raise_if_cancel_was_swallowed()
            await follower.wait()
            if follower.error is not None:
                raise follower.error
            if follower.closed:
                return
            if follower.resync:
                follower.resync = False
                async for event in self._replay(follower):
                    yield event
                continue  # a reconnect during the replay flags another one: before the buffer
            for key, event in follower.take():
                if key > follower.last_key:
                    follower.advance(key, event.cursor)
                    yield event
            if follower.moved:
                follower.moved = False
                yield QueueMoved(at=datetime.now(UTC), cursor=follower.last_cursor)

    async def _require_kept(self, user_id: UserId, cursor: str) -> None:
        """Raise CursorExpired unless the stream still holds the event at `cursor`: trimming
        and expiry drop the oldest events first, so then none after it is missing."""
        if cursor == NO_CURSOR:
            return
        oldest = await self._read(self._names.stream(user_id))
        if not oldest or key_of(oldest[0][0]) > key_of(cursor):
            raise CursorExpired(
                "events after this cursor are no longer kept: reload your jobs, then "
                "subscribe without `after`"
            )

    async def _replay(self, follower: Follower) -> AsyncIterator[JobEvent]:
        """The stored events after the follower's last cursor, page by page."""
        stream = self._names.stream(follower.user_id)
        while True:
            entries = await self._read(stream, after=follower.last_cursor, count=self._replay_page)
            for cursor, payload in entries:
                follower.advance(key_of(cursor), cursor)
                event = _decode(payload, cursor)
                if event is not None:
                    yield event
            if len(entries) < self._replay_page:
                return

    async def _read(
        self, stream: str, *, after: str | None = None, count: int = 1, reverse: bool = False
    ) -> list[tuple[str, bytes]]:
        """(cursor, payload) of up to `count` stored events: the oldest (after `after`), or
        with `reverse` the newest. Reads wait their turn (see `max_concurrent_reads`)."""
        async with self._reads:
            if reverse:
                found = await self._redis.xrevrange(stream, count=count)
            else:
                low = "-" if after is None else f"({after}"
                found = await self._redis.xrange(stream, min=low, max="+", count=count)
        # redis-py types its asyncio replies like the synchronous client's
        entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", found)
        return [(raw_id.decode(), fields[b"e"]) for raw_id, fields in entries]

    def _require_listener(self) -> None:
        if self._task is None or self._closed:
            raise RuntimeError("start the event bus (`async with bus:`) before following")

    # -- the listener ------------------------------------------------------------------------

    async def start(self, timeout_s: float = 10.0) -> None:
        """Subscribe and start the listener; returns once the subscription is live."""
        if self._task is not None or self._closed:
            raise RuntimeError("an event bus starts once")
        pubsub = self._listen_redis.pubsub()
        self._pubsub = pubsub
        await pubsub.subscribe(self._names.ticks)
        self._task = asyncio.create_task(self._listen(), name="stargraph-event-listener")
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Stop the listener; open followers end, queue ticks stop."""
        self._closed = True
        for task in (self._subscriber, self._task):
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        self._task = None
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        self._ticker.cancel()
        if self._trailing_tick is not None:
            self._trailing_tick.cancel()
        self._events_live.set()  # followers waiting for it end
        for follower in self._registry.all():
            follower.close()
        for waiter in self._registry.waiters:
            waiter.set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _listen(self) -> None:
        """Read the pub/sub connection for ever; after a failure, wait and read again
        (redis-py reconnects and re-subscribes on the next read)."""
        assert self._pubsub is not None
        while True:
            try:
                async for message in self._pubsub.listen():
                    self._on_message(message)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                _log.warning("event listener lost Redis (%s); retry in %.2f s", exc, self._retry_s)
            except Exception:
                _log.exception("event listener failed; retry in %.2f s", self._retry_s)
            await asyncio.sleep(self._retry_s)  # back-off between reconnect attempts
            self._retry_s = min(self._retry_s * 2, _MAX_RETRY_S)

    def _want_events(self) -> None:
        """Subscribe to the events channel when the first follower comes."""
        if self._subscriber is None:
            self._subscriber = asyncio.create_task(
                self._subscribe_events(), name="stargraph-event-subscriber"
            )

    async def _subscribe_events(self) -> None:
        """Send the SUBSCRIBE until Redis takes it; once taken, redis-py repeats it after each
        reconnect, and followers resync when that is confirmed (`_on_subscribed`)."""
        assert self._pubsub is not None
        retry_s = _FIRST_RETRY_S
        while True:
            try:
                await self._pubsub.subscribe(self._names.channel)
                return
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                _log.warning("cannot subscribe to the events (%s); retry in %.2f s", exc, retry_s)
            await asyncio.sleep(retry_s)
            retry_s = min(retry_s * 2, _MAX_RETRY_S)

    def _on_message(self, message: dict[str, object]) -> None:
        kind = message["type"]
        if kind == "message":
            if message["channel"] == self._channel:
                self._deliver_safely(message["data"])  # type: ignore[arg-type]
            else:
                self._on_tick(message["data"])
        elif kind == "subscribe":
            self._retry_s = _FIRST_RETRY_S
            self._ready.set()
            if message["channel"] == self._channel:
                self._on_subscribed()
            else:  # moves in a window that opened before we listened were kept quiet
                self._poke_later(self._tick_interval_s)

    def _on_tick(self, data: object) -> None:
        """Positions moved: look now, and again once the tick's window has closed, for the
        moves its gate kept quiet."""
        self._ticker.poke()
        try:
            window_s = int(data) / 1000  # type: ignore[call-overload]
        except (TypeError, ValueError):
            window_s = self._tick_interval_s
        self._poke_later(min(max(window_s, 0.0), 60.0))

    def _poke_later(self, delay_s: float) -> None:
        """One more look `delay_s` from now, instead of one still due: a tick heard since then
        went out after the earlier window closed, so its own look covers that window."""
        if self._trailing_tick is not None:
            self._trailing_tick.cancel()
        self._trailing_tick = asyncio.get_running_loop().call_later(delay_s, self._ticker.poke)

    def _on_subscribed(self) -> None:
        self.subscriptions += 1
        if not self._events_live.is_set():  # the first time: followers wait for it to start
            self._events_live.set()
            return
        for follower in self._registry.all():
            follower.flag_resync()  # catch up on what was published while we were away

    def _deliver_safely(self, data: bytes) -> None:
        try:
            self._deliver(data)
        except ValueError:
            _log.warning("skipping a malformed event message: %.80r", data)

    def _deliver(self, data: bytes) -> None:
        """Decode once, offer to each local follower of the event's user."""
        user, raw_cursor, payload = data.split(b" ", 2)
        followers = self._registry.of(int(user))
        if not followers:
            return
        cursor = raw_cursor.decode()
        event = _decode(payload, cursor)
        if event is None:
            return
        key = key_of(cursor)
        for follower in tuple(followers):
            if not follower.offer(key, event):
                self._drop_lagging(follower)

    def _drop_lagging(self, follower: Follower) -> None:
        self._registry.discard(follower)
        follower.fail(
            SubscriberLagged(
                "this subscription fell too far behind and was closed; "
                "subscribe again with the last cursor you received",
                cursor=follower.last_cursor,
            )
        )

    def _tick(self) -> None:
        for follower in self._registry.ticking:
            follower.flag_moved()
        for waiter in self._registry.waiters:
            waiter.set()


def _raise_if_cancel_was_swallowed() -> None:
    """Raise CancelledError when this task was cancelled and yet runs on. Python 3.11's
    `asyncio.wait_for` (redis-py writes through it) returns the result instead when the
    cancel lands just as the awaited write completes: a follower whose socket closed while
    it was reading its start cursor then waited for events forever, holding its place under
    the per-user limit of subscriptions."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
