"""The event bus contract, on the in-process Redis and on a real server.

Each bus gets its own clients, as a separate API process would. Waits are bounded by
`asyncio.timeout` only so a broken bus fails instead of hanging; no assertion is about time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypedDict, TypeVar

import fakeredis
import pytest
from redis.asyncio import ConnectionPool, Redis

import stargraph.broker.events as events_module
from stargraph.broker._fanout import key_of
from stargraph.broker.events import RedisEventBus
from stargraph.domain.errors import BadUserInput
from stargraph.domain.events import (
    CursorExpired,
    JobCancelled,
    JobEvent,
    JobFailed,
    JobPreview,
    JobProgress,
    JobQueued,
    JobStarted,
    JobSucceeded,
    QueueMoved,
    SubscriberLagged,
    event_from_dict,
)
from stargraph.domain.jobs import JobStatus
from stargraph.domain.types import ImageId, JobId, UserId
from tests.iterators import close

T = TypeVar("T")
ALICE = UserId(1)
BOB = UserId(2)
BusFactory = Callable[..., Awaitable[RedisEventBus]]


def twin(client: Redis, *, blocking: bool, name: str | None = None) -> Redis:
    """A new client on the same Redis as `client`, with connections of its own."""
    kwargs = client.connection_pool.connection_kwargs
    if "server" in kwargs:  # in-process Redis
        pool = ConnectionPool(
            connection_class=fakeredis.aioredis.FakeAsyncRedisConnection, server=kwargs["server"]
        )
        return Redis(connection_pool=pool)
    return Redis(
        host=kwargs["host"],
        port=kwargs["port"],
        db=kwargs.get("db", 0),
        socket_timeout=None if blocking else 10.0,
        client_name=name,
    )


@pytest.fixture
async def make_bus(any_redis: Redis, redis_prefix: str) -> AsyncIterator[BusFactory]:
    """Started buses on `any_redis`, each like one process; closed after the test."""
    buses: list[RedisEventBus] = []
    clients: list[Redis] = []

    async def make(**options: Any) -> RedisEventBus:
        commands = twin(any_redis, blocking=False)
        listen = twin(any_redis, blocking=True, name=f"{redis_prefix}-listen-{len(buses)}")
        clients.extend((commands, listen))
        bus = RedisEventBus(commands, listen, redis_prefix, **options)
        buses.append(bus)
        await bus.start()
        return bus

    yield make
    for bus in buses:
        await bus.aclose()
    for client in clients:
        await client.aclose()


@pytest.fixture
async def bus(make_bus: BusFactory) -> RedisEventBus:
    return await make_bus()


def progress(user: UserId, step: int, job: str = "job-1") -> JobProgress:
    return JobProgress(
        job_id=JobId(job),
        user_id=user,
        at=datetime.now(UTC),
        status=JobStatus.RUNNING,
        step=step,
        max_steps=10_000,
    )


def step_of(event: JobEvent | QueueMoved) -> int:
    """The step of a progress event; any other event fails the test."""
    assert isinstance(event, JobProgress), event
    return event.step


async def take(events: AsyncIterator[T], n: int) -> list[T]:
    got: list[T] = []
    async with asyncio.timeout(20):
        while len(got) < n:
            got.append(await anext(events))
    return got


async def test_a_follower_gets_every_event_in_publish_order_with_its_cursor(
    bus: RedisEventBus,
) -> None:
    follower = bus.follow_user(ALICE, after=await bus.last_cursor(ALICE))
    cursors = []
    for step in range(30):
        cursors.append(await bus.publish(progress(ALICE, step)))
        await bus.publish(progress(BOB, step))  # someone else's: never delivered to ALICE

    got = await take(follower, 30)

    assert [(e.user_id, step_of(e)) for e in got] == [(ALICE, s) for s in range(30)]
    assert [e.cursor for e in got] == cursors
    assert sorted(cursors, key=key_of) == cursors
    await close(follower)


async def test_a_live_follower_gets_everything_after_its_first_event(bus: RedisEventBus) -> None:
    follower = bus.follow_user(ALICE)
    first = asyncio.ensure_future(anext(follower))
    step = 0
    while not first.done():  # "from now" starts once the follower is in place
        await bus.publish(progress(ALICE, step))
        step += 1
        await asyncio.sleep(0.001)
    seen = step_of(await first)
    for later in range(step, step + 20):
        await bus.publish(progress(ALICE, later))

    rest = await take(follower, step + 20 - seen - 1)

    assert [step_of(e) for e in rest] == list(range(seen + 1, step + 20))
    await close(follower)


async def test_every_kind_of_event_travels_intact(bus: RedisEventBus) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    base = _Base(job_id=JobId("j"), user_id=ALICE, at=at)
    sent: list[JobEvent] = [
        JobQueued(**base, status=JobStatus.QUEUED, position=3),
        JobQueued(**base, status=JobStatus.QUEUED, position=None),
        JobStarted(**base, status=JobStatus.RUNNING),
        JobProgress(**base, status=JobStatus.RUNNING, step=2, max_steps=20),
        JobPreview(**base, status=JobStatus.RUNNING, data_url="data:image/jpeg;base64,/9j/"),
        JobSucceeded(**base, status=JobStatus.SUCCEEDED, image_ids=(ImageId("a"), ImageId("b"))),
        JobFailed(**base, status=JobStatus.FAILED, code="COMFY", message='bad "quote" 中文'),
        JobCancelled(**base, status=JobStatus.CANCELLED),
    ]
    follower = bus.follow_user(ALICE, after=await bus.last_cursor(ALICE))
    cursors = [await bus.publish(event) for event in sent]

    got = await take(follower, len(sent))

    assert got == [
        type(e)(**{**_fields(e), "cursor": c}) for e, c in zip(sent, cursors, strict=True)
    ]
    await close(follower)


class _Base(TypedDict):
    job_id: JobId
    user_id: UserId
    at: datetime


def _fields(event: JobEvent) -> dict[str, Any]:
    return {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}


async def test_resuming_after_a_cursor_misses_nothing_and_repeats_nothing_under_load(
    bus: RedisEventBus,
) -> None:
    total = 400
    rng = random.Random(7)

    async def publish_all() -> None:
        for step in range(total):
            await bus.publish(progress(ALICE, step))
            if step % 7 == 0:
                await asyncio.sleep(0)

    cursor = await bus.last_cursor(ALICE)
    publisher = asyncio.create_task(publish_all())
    received: list[JobEvent] = []
    while len(received) < total:  # drop the subscription at random points and resume
        follower = bus.follow_user(ALICE, after=cursor)
        received += await take(follower, min(rng.randint(1, 60), total - len(received)))
        await close(follower)
        cursor = received[-1].cursor
    await publisher

    assert [step_of(e) for e in received] == list(range(total))


async def test_an_event_published_in_one_process_reaches_followers_in_another(
    make_bus: BusFactory,
) -> None:
    api_one, api_two, worker = await make_bus(), await make_bus(), await make_bus()
    start = await api_one.last_cursor(ALICE)
    on_one = api_one.follow_user(ALICE, after=start)
    on_two = api_two.follow_user(ALICE, after=start)

    cursors = [await worker.publish(progress(ALICE, step)) for step in range(10)]

    assert [e.cursor for e in await take(on_one, 10)] == cursors
    assert [e.cursor for e in await take(on_two, 10)] == cursors
    await close(on_one)
    await close(on_two)


async def test_a_process_that_follows_nobody_does_not_read_the_events(
    make_bus: BusFactory,
) -> None:
    api, worker = await make_bus(), await make_bus()
    start = await api.last_cursor(ALICE)
    on_api = api.follow_user(ALICE, after=start)
    ticks = worker.queue_ticks()
    tick = asyncio.ensure_future(anext(ticks))

    cursors = [await worker.publish(progress(ALICE, step)) for step in range(5)]
    assert [e.cursor for e in await take(on_api, 5)] == cursors
    await worker.queue_moved()
    async with asyncio.timeout(20):
        await tick  # queue ticks still reach it
    assert (api.subscriptions, worker.subscriptions) == (1, 0)

    on_worker = worker.follow_user(ALICE, after=start)  # its first follower subscribes
    assert [e.cursor for e in await take(on_worker, 5)] == cursors
    later = await api.publish(progress(ALICE, 5))
    assert [e.cursor for e in await take(on_worker, 1)] == [later]
    assert worker.subscriptions == 1
    await close(on_worker)
    await close(on_api)
    await close(ticks)


async def test_a_slow_follower_is_closed_as_lagged_and_the_others_get_everything(
    make_bus: BusFactory,
) -> None:
    bus = await make_bus(buffer_size=8)
    start = await bus.last_cursor(ALICE)
    slow = bus.follow_user(ALICE, after=start)
    fast = bus.follow_user(ALICE, after=start)
    first = await bus.publish(progress(ALICE, 0))
    assert (await anext(slow)).cursor == first
    assert (await anext(fast)).cursor == first

    fast_reader = asyncio.create_task(take(fast, 30))
    for step in range(1, 31):
        await bus.publish(progress(ALICE, step))

    assert [step_of(e) for e in await fast_reader] == list(range(1, 31))
    with pytest.raises(SubscriberLagged) as lagged:
        await take(slow, 30)
    assert lagged.value.code == "LAGGED"
    assert lagged.value.cursor == first  # where to resume from
    resumed = bus.follow_user(ALICE, after=lagged.value.cursor)
    assert [step_of(e) for e in await take(resumed, 30)] == list(range(1, 31))
    await close(resumed)
    await close(fast)


async def test_the_listener_decodes_each_event_once_however_many_follow_it(
    bus: RedisEventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = await bus.last_cursor(ALICE)
    followers = [bus.follow_user(ALICE, after=start) for _ in range(3)]
    await bus.publish(progress(ALICE, 0))
    for follower in followers:
        await take(follower, 1)
    decoded = 0
    original = event_from_dict  # what the bus module calls, until patched below

    def counting(*args: Any, **kwargs: Any) -> JobEvent:
        nonlocal decoded
        decoded += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(events_module, "event_from_dict", counting)
    for step in range(1, 11):
        await bus.publish(progress(ALICE, step))
    for follower in followers:
        assert len(await take(follower, 10)) == 10

    assert decoded == 10
    for follower in followers:
        await close(follower)


async def test_follow_job_keeps_to_one_job_and_ends_after_its_terminal_event(
    bus: RedisEventBus,
) -> None:
    mine, other = JobId("mine"), JobId("other")
    follower = bus.follow_job(ALICE, mine, after=await bus.last_cursor(ALICE))
    await bus.publish(progress(ALICE, 1, job=mine))
    await bus.publish(progress(ALICE, 1, job=other))
    await bus.publish(
        JobCancelled(job_id=mine, user_id=ALICE, at=datetime.now(UTC), status=JobStatus.CANCELLED)
    )
    await bus.publish(progress(ALICE, 2, job=mine))  # after the end: never seen

    async with asyncio.timeout(20):
        got = [e async for e in follower if not isinstance(e, QueueMoved)]

    assert [(type(e), e.job_id) for e in got] == [(JobProgress, mine), (JobCancelled, mine)]


async def test_queue_moves_are_coalesced_into_few_ticks_and_the_last_move_is_announced(
    make_bus: BusFactory,
) -> None:
    bus = await make_bus(tick_interval_s=0.3)
    ticks = bus.queue_ticks()
    first = asyncio.ensure_future(anext(ticks))
    while not first.done():  # until the tick reader is in place
        await bus.queue_moved()
        await asyncio.sleep(0.01)
    await first
    for _ in range(50):
        await bus.queue_moved()

    await take(ticks, 1)  # the trailing tick after the burst
    count = 0
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.9):
            async for _ in ticks:
                count += 1
    assert count <= 1  # 50 moves gave at most a couple of ticks


async def test_a_burst_of_queue_moves_sends_one_tick_and_its_hearers_look_again_after_it(
    make_bus: BusFactory, any_redis: Redis, redis_prefix: str
) -> None:
    """The channel carries one tick per window however many jobs move, so no process reads a
    message per submission; a process that heard it looks at the positions once more when
    the window closes, and the last move of the burst is announced with nothing more sent."""
    publisher = await make_bus(tick_interval_s=0.3)
    hearer = await make_bus(tick_interval_s=0.3)
    channel = any_redis.pubsub()
    await channel.subscribe(f"{{{redis_prefix}}}:queue-moved")
    ticks = hearer.queue_ticks()
    first = asyncio.ensure_future(anext(ticks))
    await asyncio.sleep(0.05)  # the tick reader is in place
    try:
        for _ in range(50):
            await publisher.queue_moved()
        async with asyncio.timeout(5):
            await first  # at once
            await anext(ticks)  # once the window has closed
        sent = []
        while (message := await channel.get_message(timeout=0.05)) is not None:
            sent += [message["data"]] if message["type"] == "message" else []
    finally:
        await channel.aclose()  # type: ignore[no-untyped-call]
    assert sent == [b"300"]  # the one tick, which names its window in ms


async def test_followers_of_the_queue_get_a_tick_with_their_last_cursor(
    bus: RedisEventBus,
) -> None:
    follower = bus.follow_user_and_queue(ALICE, after=await bus.last_cursor(ALICE))
    cursor = await bus.publish(progress(ALICE, 0))
    assert (await anext(follower)).cursor == cursor

    reader = asyncio.ensure_future(anext(follower))
    await bus.queue_moved()
    tick = await asyncio.wait_for(reader, 20)

    assert isinstance(tick, QueueMoved)
    assert tick.cursor == cursor
    await close(follower)


async def test_an_event_published_with_a_queue_move_reaches_followers_with_its_tick(
    bus: RedisEventBus,
) -> None:
    follower = bus.follow_user_and_queue(ALICE, after=await bus.last_cursor(ALICE))
    await bus.publish(progress(ALICE, 0))
    await anext(follower)  # following live from here on

    cursor = await bus.publish(progress(ALICE, 1), queue_moved=True)
    async with asyncio.timeout(20):
        event, tick = await anext(follower), await anext(follower)

    assert event.cursor == cursor
    assert isinstance(tick, QueueMoved)
    assert tick.cursor == cursor
    await close(follower)


async def test_a_bad_cursor_is_bad_user_input(bus: RedisEventBus) -> None:
    with pytest.raises(BadUserInput) as error:
        await anext(bus.follow_user(ALICE, after="not-a-cursor"))
    assert error.value.field == "after"


async def test_events_stay_readable_from_the_start_of_the_stream(bus: RedisEventBus) -> None:
    cursors = [await bus.publish(progress(ALICE, step)) for step in range(5)]

    replayed = await take(bus.follow_user(ALICE, after="0-0"), 5)

    assert [e.cursor for e in replayed] == cursors


async def test_closing_the_bus_ends_its_followers_and_following_needs_a_started_bus(
    make_bus: BusFactory,
) -> None:
    bus = await make_bus()
    follower = bus.follow_user(ALICE, after=await bus.last_cursor(ALICE))
    reader = asyncio.ensure_future(anext(follower))
    await bus.publish(progress(ALICE, 0))
    await reader
    pending = asyncio.ensure_future(anext(follower))
    await asyncio.sleep(0)

    await bus.aclose()

    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 20)
    with pytest.raises(RuntimeError):
        await anext(bus.follow_user(ALICE))


async def test_many_followers_starting_at_once_all_get_their_events(bus: RedisEventBus) -> None:
    users = [UserId(1000 + n) for n in range(250)]  # more than a client's connection pool
    for user in users:
        await bus.publish(progress(user, 0))
    followers = [bus.follow_user(user, after="0-0") for user in users]

    firsts = await asyncio.gather(*(anext(f) for f in followers))

    assert [(e.user_id, step_of(e)) for e in firsts] == [(u, 0) for u in users]
    for follower in followers:
        await close(follower)


async def test_a_closed_follower_is_gone_at_once(bus: RedisEventBus) -> None:
    follower = bus.follow_job(ALICE, JobId("j"), after=await bus.last_cursor(ALICE))
    await bus.publish(progress(ALICE, 0, job="j"))
    await anext(follower)
    assert bus.subscriber_count == 1

    await close(follower)

    assert bus.subscriber_count == 0


async def test_many_concurrent_publishers_all_land_in_the_order_they_called(
    bus: RedisEventBus,
) -> None:
    follower = bus.follow_user(ALICE, after=await bus.last_cursor(ALICE))
    # more publishers at once than a client has connections, as a worker's listeners are
    cursors = await asyncio.gather(*(bus.publish(progress(ALICE, step)) for step in range(500)))

    got = await take(follower, 500)

    assert [step_of(e) for e in got] == list(range(500))
    assert [e.cursor for e in got] == list(cursors)
    await close(follower)


async def test_waiting_progress_events_go_with_the_next_other_event_in_order(
    make_bus: BusFactory,
) -> None:
    bus = await make_bus(progress_linger_s=3600.0)  # progress alone would wait for an hour
    follower = bus.follow_user(ALICE, after=await bus.last_cursor(ALICE))
    steps = [asyncio.ensure_future(bus.publish(progress(ALICE, step))) for step in range(3)]
    await asyncio.sleep(0)  # the three are waiting now
    assert not any(step.done() for step in steps)
    started = JobStarted(
        job_id=JobId("job-1"), user_id=ALICE, at=datetime.now(UTC), status=JobStatus.RUNNING
    )

    async with asyncio.timeout(20):
        last = await bus.publish(started)  # not a progress event: sends at once, and them
        cursors = [*(await asyncio.gather(*steps)), last]

    got = await take(follower, 4)
    assert [e.cursor for e in got] == cursors
    assert [type(e) for e in got] == [JobProgress, JobProgress, JobProgress, JobStarted]
    await close(follower)


async def test_publishing_goes_on_after_redis_forgot_its_scripts(
    bus: RedisEventBus, any_redis: Redis
) -> None:
    follower = bus.follow_user(ALICE, after=await bus.last_cursor(ALICE))
    await bus.publish(progress(ALICE, 0))
    await any_redis.script_flush()  # what a restart without persistence does

    await asyncio.gather(*(bus.publish(progress(ALICE, step)) for step in (1, 2, 3)))

    assert [step_of(e) for e in await take(follower, 4)] == [0, 1, 2, 3]
    await close(follower)


async def test_resuming_from_a_cursor_the_capped_stream_no_longer_holds_is_refused(
    make_bus: BusFactory,
) -> None:
    bus = await make_bus(stream_maxlen=10)
    cursors = [await bus.publish(progress(ALICE, step)) for step in range(400)]
    resumed = bus.follow_user(ALICE, after=cursors[-2])
    assert (await anext(resumed)).cursor == cursors[-1]  # a kept cursor misses nothing
    await close(resumed)

    with pytest.raises(CursorExpired) as expired:
        await anext(bus.follow_user(ALICE, after=cursors[0]))  # its successors were trimmed
    assert expired.value.code == "CURSOR_EXPIRED"
    with pytest.raises(CursorExpired):
        await anext(bus.follow_user(BOB, after=cursors[0]))  # Bob's stream holds nothing


async def test_a_follower_whose_cancel_was_swallowed_on_the_way_still_ends(
    bus: RedisEventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.11's `wait_for`, inside redis-py, can swallow a cancel that lands as a write
    completes; the follower must end all the same, not wait for events forever."""
    reading = asyncio.Event()

    async def cursor_read_that_swallows_a_cancel(user_id: UserId) -> str:
        reading.set()
        # what that wait_for does: the read's result comes back instead of the cancel
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        return "0-0"

    monkeypatch.setattr(bus, "last_cursor", cursor_read_that_swallows_a_cancel)

    async def follow() -> None:
        async for _ in bus.follow_user(ALICE):
            pass

    task = asyncio.create_task(follow())
    await reading.wait()
    task.cancel()
    await asyncio.wait({task}, timeout=5)  # bounded: a follower that waits on fails below
    assert task.cancelled()
    assert bus.subscriber_count == 0
