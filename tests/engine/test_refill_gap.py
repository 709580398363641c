"""The slot-free → next-POST gap that /metrics reports is measured once per refill."""

from __future__ import annotations

import asyncio

from stargraph.domain.backends import BackendPool
from stargraph.domain.types import BackendId
from tests.engine.counts import fresh

B = BackendId("http://gpu-1")


async def test_the_gap_runs_from_a_full_backend_freeing_a_slot_to_the_next_send() -> None:
    now = [100.0]
    pool = BackendPool([B], max_inflight=2, clock=lambda: now[0])
    pool.set_inflight(B, fresh(2))
    assert pool.take_refill_gap(B) is None  # nothing freed yet
    now[0] = 101.0
    pool.set_inflight(B, fresh(1))  # a slot frees on a full backend
    now[0] = 101.004
    gap = pool.take_refill_gap(B)
    assert gap is not None and abs(gap - 0.004) < 1e-9
    assert pool.take_refill_gap(B) is None  # counted once


async def test_no_gap_when_the_backend_was_not_full() -> None:
    pool = BackendPool([B], max_inflight=2, clock=lambda: 5.0)
    pool.set_inflight(B, fresh(1))
    pool.set_inflight(B, fresh(0))
    assert pool.take_refill_gap(B) is None


async def test_an_empty_queue_ends_the_wait_so_idle_time_is_not_counted_as_a_gap() -> None:
    now = [0.0]
    pool = BackendPool([B], max_inflight=1, clock=lambda: now[0])
    pool.set_inflight(B, fresh(1))
    pool.set_inflight(B, fresh(0))
    pool.nothing_to_refill()  # the dispatcher found the queue empty
    now[0] = 60.0
    assert pool.take_refill_gap(B) is None  # the next job's send a minute later is no gap


async def test_an_ending_waits_for_its_freed_slot_to_be_refilled_first() -> None:
    pool = BackendPool([B], max_inflight=1)
    pool.mark_up(B)
    pool.set_inflight(B, fresh(1))
    pool.set_inflight(B, fresh(0))  # a slot frees on a full backend
    ending = asyncio.create_task(pool.refills_first(within_s=30))
    await asyncio.sleep(0.01)
    assert not ending.done()  # waits while the slot is not refilled

    assert pool.take_refill_gap(B) is not None  # the dispatcher sends the next job
    await asyncio.wait_for(ending, 1)


async def test_an_ending_does_not_wait_when_no_refill_is_coming() -> None:
    pool = BackendPool([B], max_inflight=2)
    pool.mark_up(B)
    pool.set_inflight(B, fresh(1))
    pool.set_inflight(B, fresh(0))  # the backend was not full: nothing to refill
    await asyncio.wait_for(pool.refills_first(within_s=30), 1)

    pool.set_inflight(B, fresh(2))
    pool.set_inflight(B, fresh(1))
    ending = asyncio.create_task(pool.refills_first(within_s=30))
    await asyncio.sleep(0.01)
    pool.nothing_to_refill()  # the queue is empty
    await asyncio.wait_for(ending, 1)
    # and when no dispatcher answers at all, the wait is bounded
    pool.set_inflight(B, fresh(2))
    pool.set_inflight(B, fresh(1))
    await asyncio.wait_for(pool.refills_first(within_s=0.01), 1)


async def test_an_ending_pauses_while_another_healthy_backend_waits_for_its_refill() -> None:
    a, b = BackendId("http://gpu-a"), BackendId("http://gpu-b")
    pool = BackendPool([a, b], max_inflight=1)
    for backend in (a, b):
        pool.mark_up(backend)
        pool.set_inflight(backend, fresh(1))
    pool.set_inflight(b, fresh(0))  # b's slot frees while a's job is being ended
    ending = asyncio.create_task(pool.refills_first(within_s=30))
    await asyncio.sleep(0.01)
    assert not ending.done()
    assert pool.take_refill_gap(b) is not None  # b's next job is on its way
    await asyncio.wait_for(ending, 1)

    pool.set_inflight(a, fresh(0))
    pool.mark_down(a, "socket closed")  # no refill can go to a backend that is down
    await asyncio.wait_for(pool.refills_first(within_s=30), 1)


async def test_a_job_leaving_a_full_backend_wakes_the_dispatcher_before_redis_answers() -> None:
    pool = BackendPool([B], max_inflight=2)
    pool.mark_up(B)
    pool.set_inflight(B, fresh(2))
    waiting = asyncio.create_task(pool.wait_for_slot())
    await asyncio.sleep(0.01)
    assert not waiting.done()

    pool.note_left(B)  # the listener saw the end; the SlotBook's release is still on its way
    await asyncio.wait_for(waiting, 1)
    assert pool.take_refill_gap(B) is not None  # the gap runs from this moment
    pool.set_inflight(B, fresh(1))  # the release's count agrees: nothing changes
    assert pool.snapshot()[0].inflight == 1
