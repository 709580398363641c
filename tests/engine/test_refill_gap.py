"""The slot-free → next-POST gap that /metrics reports is measured once per refill."""

from __future__ import annotations

from stargraph.domain.backends import BackendPool
from stargraph.domain.types import BackendId

B = BackendId("http://gpu-1")


async def test_the_gap_runs_from_a_full_backend_freeing_a_slot_to_the_next_send() -> None:
    now = [100.0]
    pool = BackendPool([B], max_inflight=2, clock=lambda: now[0])
    pool.set_inflight(B, 2)
    assert pool.take_refill_gap(B) is None  # nothing freed yet
    now[0] = 101.0
    pool.set_inflight(B, 1)  # a slot frees on a full backend
    now[0] = 101.004
    gap = pool.take_refill_gap(B)
    assert gap is not None and abs(gap - 0.004) < 1e-9
    assert pool.take_refill_gap(B) is None  # counted once


async def test_no_gap_when_the_backend_was_not_full() -> None:
    pool = BackendPool([B], max_inflight=2, clock=lambda: 5.0)
    pool.set_inflight(B, 1)
    pool.set_inflight(B, 0)
    assert pool.take_refill_gap(B) is None
