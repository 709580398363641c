"""BackendPool: health, slot hints, checkpoint preference and the slot-freed signal."""

from __future__ import annotations

import asyncio

from stargraph.domain.backends import BackendPool, SlotCount
from stargraph.domain.types import BackendId
from tests.engine.counts import fresh

A, B, C = BackendId("http://a"), BackendId("http://b"), BackendId("http://c")


def _pool() -> BackendPool:
    pool = BackendPool([A, B, C], max_inflight=2)
    for backend in (A, B, C):
        pool.mark_up(backend)
    return pool


async def test_a_backend_that_last_ran_the_checkpoint_comes_first_then_the_least_loaded() -> None:
    pool = _pool()
    pool.set_inflight(A, fresh(1))
    pool.note_checkpoint(C, "xl.safetensors")
    assert pool.candidates("xl.safetensors") == [C, B, A]
    assert pool.candidates("other") == [B, C, A]


async def test_full_or_unhealthy_backends_get_no_jobs() -> None:
    pool = _pool()
    pool.set_inflight(A, fresh(2))
    pool.mark_down(B, "socket closed")
    assert pool.candidates(None) == [C]
    snapshot = {s.url: s for s in pool.snapshot()}
    assert snapshot[B].healthy is False and snapshot[B].last_error == "socket closed"
    assert snapshot[A].inflight == 2 and snapshot[A].healthy


async def test_waiting_for_a_slot_wakes_when_one_is_freed() -> None:
    pool = BackendPool([A], max_inflight=1)
    pool.mark_up(A)
    pool.set_inflight(A, fresh(1))
    waiter = asyncio.ensure_future(pool.wait_for_slot())
    await asyncio.sleep(0)
    assert not waiter.done()
    pool.set_inflight(A, fresh(0))
    await asyncio.wait_for(waiter, 1)


async def test_an_answer_older_than_one_applied_cannot_free_a_slot_again() -> None:
    # a release's answer (count 1) arriving after the next reservation's (count 2)
    pool = BackendPool([A], max_inflight=2)
    pool.mark_up(A)
    release, reservation = SlotCount(1, 41), SlotCount(2, 42)
    pool.set_inflight(A, reservation)
    pool.set_inflight(A, release)
    assert pool.candidates(None) == []
    assert pool.snapshot()[0].inflight == 2


async def test_a_picked_backend_counts_busier_at_once_so_the_next_pick_looks_elsewhere() -> None:
    pool = _pool()
    pool.set_inflight(A, fresh(1))
    assert [pool.pick(None) for _ in range(5)] == [B, C, A, B, C]
    assert pool.pick(None) is None  # every slot picked
    assert not pool.has_free_slot()


async def test_a_backed_off_backend_comes_back_by_itself() -> None:
    pool = BackendPool([A], max_inflight=1)
    pool.mark_up(A)
    delay = pool.back_off(A, "connection refused")
    assert not pool.is_healthy(A)
    await asyncio.wait_for(pool.wait_for_slot(), delay + 2)
    assert pool.is_healthy(A)


async def test_run_times_are_averaged_for_the_eta() -> None:
    pool = _pool()
    pool.note_run_time(A, 2.0)
    pool.note_run_time(A, 4.0)
    mean = {s.url: s.mean_run_s for s in pool.snapshot()}
    assert mean[B] is None
    assert 2.0 < (mean[A] or 0) < 4.0
